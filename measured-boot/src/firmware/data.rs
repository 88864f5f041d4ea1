//! Typed event data for the common firmware event types: UEFI variables, image loads and their
//! device paths, GPT tables, actions, separators, firmware blobs, POST codes and the
//! `EV_NO_ACTION` structures (Spec ID, StartupLocality). Decoding never fails: data that does
//! not fit its type becomes [`EventData::Malformed`] with the reason.

use std::fmt;

use super::EventType;

/// A UEFI GUID, stored in its on-disk byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid(pub [u8; 16]);

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            u16::from_le_bytes([b[4], b[5]]),
            u16::from_le_bytes([b[6], b[7]]),
            b[8],
            b[9],
            b[10],
            b[11],
            b[12],
            b[13],
            b[14],
            b[15]
        )
    }
}

/// One algorithm declared by the Spec ID event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdAlgorithm {
    /// The `TPM_ALG_ID`.
    pub algorithm_id: u16,
    /// The digest size in bytes.
    pub digest_size: u16,
}

/// The `TCG_EfiSpecIDEvent` header of a crypto-agile log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIdEvent {
    /// `platformClass` (0 client, 1 server).
    pub platform_class: u32,
    /// `specVersionMajor`.
    pub spec_version_major: u8,
    /// `specVersionMinor`.
    pub spec_version_minor: u8,
    /// `specErrata`.
    pub spec_errata: u8,
    /// `uintnSize` (1 for 32-bit, 2 for 64-bit UINTN).
    pub uintn_size: u8,
    /// The declared banks.
    pub algorithms: Vec<SpecIdAlgorithm>,
    /// `vendorInfo`.
    pub vendor_info: Vec<u8>,
}

/// `UEFI_VARIABLE_DATA`: a UEFI variable as measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiVariableData {
    /// The vendor GUID.
    pub vendor: Guid,
    /// The variable name (UCS-2 decoded).
    pub name: String,
    /// The variable's value.
    pub data: Vec<u8>,
}

/// One node of a UEFI device path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePathNode {
    /// Node type (1 hardware, 2 ACPI, 3 messaging, 4 media, 5 BIOS boot, 0x7f end).
    pub node_type: u8,
    /// Node subtype.
    pub subtype: u8,
    /// Node data after the 4-byte node header.
    pub data: Vec<u8>,
}

/// A UEFI device path: its nodes, with a readable rendering in the style of the UEFI shell.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevicePath {
    /// The nodes, up to and excluding the end-of-path node.
    pub nodes: Vec<DevicePathNode>,
    /// Bytes after a malformed node (kept, not decoded).
    pub trailing: Vec<u8>,
}

/// `UEFI_IMAGE_LOAD_EVENT`: a PE image loaded by the firmware. The digest is the image's
/// Authenticode hash, so nothing here is covered by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageLoadEvent {
    /// `ImageLocationInMemory`.
    pub location: u64,
    /// `ImageLengthInMemory`.
    pub length: u64,
    /// `ImageLinkTimeAddress`.
    pub link_time_address: u64,
    /// The device path the image was loaded from.
    pub device_path: DevicePath,
}

/// `UEFI_PLATFORM_FIRMWARE_BLOB`: a region of firmware measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareBlob {
    /// Base address.
    pub base: u64,
    /// Length in bytes.
    pub length: u64,
}

/// The GPT header as measured in `UEFI_GPT_DATA`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    /// `Signature` ("EFI PART").
    pub signature: u64,
    /// `Revision`.
    pub revision: u32,
    /// `HeaderSize`.
    pub header_size: u32,
    /// `MyLBA`.
    pub my_lba: u64,
    /// `AlternateLBA`.
    pub alternate_lba: u64,
    /// `FirstUsableLBA`.
    pub first_usable_lba: u64,
    /// `LastUsableLBA`.
    pub last_usable_lba: u64,
    /// `DiskGUID`.
    pub disk_guid: Guid,
    /// `PartitionEntryLBA`.
    pub partition_entry_lba: u64,
    /// `NumberOfPartitionEntries`.
    pub number_of_partition_entries: u32,
    /// `SizeOfPartitionEntry`.
    pub size_of_partition_entry: u32,
}

/// One GPT partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptPartition {
    /// `PartitionTypeGUID`.
    pub type_guid: Guid,
    /// `UniquePartitionGUID`.
    pub unique_guid: Guid,
    /// `StartingLBA`.
    pub starting_lba: u64,
    /// `EndingLBA`.
    pub ending_lba: u64,
    /// `Attributes`.
    pub attributes: u64,
    /// `PartitionName` (UCS-2 decoded).
    pub name: String,
}

/// `UEFI_GPT_DATA`: the GPT of the boot disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptData {
    /// The header.
    pub header: GptHeader,
    /// The non-empty partitions.
    pub partitions: Vec<GptPartition>,
}

/// An event's data decoded according to its type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventData {
    /// `EV_NO_ACTION` with `Spec ID Event03`.
    SpecId(SpecIdEvent),
    /// `EV_NO_ACTION` with `StartupLocality`: the locality the TPM was started from, which
    /// sets PCR 0's initial value.
    StartupLocality(u8),
    /// Any other `EV_NO_ACTION` data, with its NUL-terminated signature if it has one
    /// (e.g. `Spec ID Event00`, `SP800-155 Event`, `NvIndexInstance`).
    NoAction {
        /// The leading 16-byte signature, NUL-trimmed, if printable.
        signature: Option<String>,
    },
    /// `EV_EFI_VARIABLE_*`.
    Variable(UefiVariableData),
    /// `EV_EFI_BOOT_SERVICES_APPLICATION`, `…_DRIVER`, `EV_EFI_RUNTIME_SERVICES_DRIVER`.
    ImageLoad(ImageLoadEvent),
    /// `EV_EFI_ACTION`, `EV_ACTION`, `EV_OMIT_BOOT_DEVICE_EVENTS`: an ASCII string.
    Action(String),
    /// `EV_IPL`: what the boot loader logged, as text (NUL-trimmed) when it is UTF-8.
    Ipl(String),
    /// `EV_SEPARATOR`: 0 normally, 1 for an error separator.
    Separator(u32),
    /// `EV_EFI_GPT_EVENT`.
    Gpt(GptData),
    /// `EV_POST_CODE` as a firmware region.
    PostCodeBlob(FirmwareBlob),
    /// `EV_POST_CODE` as text (e.g. `ACPI DATA`, `POST CODE`).
    PostCodeText(String),
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB`.
    FirmwareBlob(FirmwareBlob),
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB2`: a described firmware region.
    FirmwareBlob2 {
        /// The description.
        description: String,
        /// The region.
        blob: FirmwareBlob,
    },
    /// `EV_S_CRTM_VERSION`: the CRTM version string (UCS-2 or ASCII).
    CrtmVersion(String),
    /// A type this crate does not decode; see [`super::Event::data`].
    Opaque,
    /// The data does not fit the structure its type announces.
    Malformed(String),
}

/// A bounds-checked little-endian reader over event data.
struct Cur<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cur<'a> {
    fn new(b: &'a [u8]) -> Self {
        Self { b, p: 0 }
    }
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], String> {
        let left = self.b.len() - self.p;
        match usize::try_from(n) {
            Ok(n) if n <= left => {
                let s = &self.b[self.p..self.p + n];
                self.p += n;
                Ok(s)
            }
            _ => Err(format!(
                "{what}: needs {n} bytes at offset {}, {left} left",
                self.p
            )),
        }
    }
    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.arr::<1>(what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.arr(what)?))
    }
    fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }
    fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }
    fn guid(&mut self, what: &str) -> Result<Guid, String> {
        Ok(Guid(self.arr(what)?))
    }
    fn rest(&self) -> &'a [u8] {
        &self.b[self.p..]
    }
    fn expect_end(&self, what: &str) -> Result<(), String> {
        match self.b.len() - self.p {
            0 => Ok(()),
            n => Err(format!("{what}: {n} unexpected trailing bytes")),
        }
    }
}

/// Decode UCS-2 / UTF-16LE, dropping trailing NULs; lossy.
pub(crate) fn utf16le(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let end = units.iter().rposition(|&u| u != 0).map_or(0, |i| i + 1);
    String::from_utf16_lossy(&units[..end])
}

/// Text from bytes: UTF-8 with trailing NULs removed, or `None` if not UTF-8.
fn text(b: &[u8]) -> Option<String> {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    std::str::from_utf8(&b[..end]).ok().map(str::to_owned)
}

fn spec_id(data: &[u8]) -> Result<SpecIdEvent, String> {
    let mut c = Cur::new(data);
    c.take(16, "signature")?;
    let platform_class = c.u32("platformClass")?;
    let spec_version_minor = c.u8("specVersionMinor")?;
    let spec_version_major = c.u8("specVersionMajor")?;
    let spec_errata = c.u8("specErrata")?;
    let uintn_size = c.u8("uintnSize")?;
    let n = c.u32("numberOfAlgorithms")?;
    if u64::from(n) * 4 > c.rest().len() as u64 {
        return Err(format!(
            "numberOfAlgorithms {n} needs {} bytes, {} left",
            u64::from(n) * 4,
            c.rest().len()
        ));
    }
    let mut algorithms = Vec::with_capacity(n as usize);
    for _ in 0..n {
        algorithms.push(SpecIdAlgorithm {
            algorithm_id: c.u16("algorithmId")?,
            digest_size: c.u16("digestSize")?,
        });
    }
    let vendor_size = c.u8("vendorInfoSize")?;
    let vendor_info = c.take(u64::from(vendor_size), "vendorInfo")?.to_vec();
    c.expect_end("Spec ID event")?;
    Ok(SpecIdEvent {
        platform_class,
        spec_version_major,
        spec_version_minor,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    })
}

fn no_action(data: &[u8]) -> Result<EventData, String> {
    if data.starts_with(b"Spec ID Event03\0") {
        return spec_id(data).map(EventData::SpecId);
    }
    if data.starts_with(b"StartupLocality\0") {
        let mut c = Cur::new(data);
        c.take(16, "signature")?;
        let locality = c.u8("StartupLocality")?;
        c.expect_end("StartupLocality")?;
        return Ok(EventData::StartupLocality(locality));
    }
    let signature = data.get(..16).and_then(|s| {
        let t = text(s.split(|&b| b == 0).next().unwrap_or_default())?;
        (!t.is_empty() && t.chars().all(|c| c.is_ascii_graphic() || c == ' ')).then_some(t)
    });
    Ok(EventData::NoAction { signature })
}

/// The `UEFI_VARIABLE_DATA` structure.
pub(crate) fn variable(data: &[u8]) -> Result<(UefiVariableData, usize), String> {
    let mut c = Cur::new(data);
    let vendor = c.guid("VariableName")?;
    let name_len = c.u64("UnicodeNameLength")?;
    let data_len = c.u64("VariableDataLength")?;
    let name = utf16le(c.take(name_len.saturating_mul(2), "UnicodeName")?);
    let value_at = c.p;
    let value = c.take(data_len, "VariableData")?.to_vec();
    c.expect_end("UEFI_VARIABLE_DATA")?;
    Ok((
        UefiVariableData {
            vendor,
            name,
            data: value,
        },
        value_at,
    ))
}

fn device_path(b: &[u8]) -> DevicePath {
    let mut nodes = Vec::new();
    let mut c = Cur::new(b);
    loop {
        let start = c.p;
        let header = (c.u8("type"), c.u8("subtype"), c.u16("length"));
        let (Ok(node_type), Ok(subtype), Ok(len)) = header else {
            return DevicePath {
                nodes,
                trailing: b[start..].to_vec(),
            };
        };
        if node_type == 0x7f && subtype == 0xff {
            return DevicePath {
                nodes,
                trailing: b[c.p..].to_vec(),
            };
        }
        let Some(body_len) = len.checked_sub(4) else {
            return DevicePath {
                nodes,
                trailing: b[start..].to_vec(),
            };
        };
        let Ok(body) = c.take(u64::from(body_len), "node") else {
            return DevicePath {
                nodes,
                trailing: b[start..].to_vec(),
            };
        };
        nodes.push(DevicePathNode {
            node_type,
            subtype,
            data: body.to_vec(),
        });
        if c.rest().is_empty() {
            return DevicePath {
                nodes,
                trailing: Vec::new(),
            };
        }
    }
}

fn image_load(data: &[u8]) -> Result<ImageLoadEvent, String> {
    let mut c = Cur::new(data);
    let location = c.u64("ImageLocationInMemory")?;
    let length = c.u64("ImageLengthInMemory")?;
    let link_time_address = c.u64("ImageLinkTimeAddress")?;
    let dp_len = c.u64("LengthOfDevicePath")?;
    let dp = c.take(dp_len, "DevicePath")?;
    c.expect_end("UEFI_IMAGE_LOAD_EVENT")?;
    Ok(ImageLoadEvent {
        location,
        length,
        link_time_address,
        device_path: device_path(dp),
    })
}

fn blob(data: &[u8]) -> Result<FirmwareBlob, String> {
    let mut c = Cur::new(data);
    let base = c.u64("BlobBase")?;
    let length = c.u64("BlobLength")?;
    c.expect_end("UEFI_PLATFORM_FIRMWARE_BLOB")?;
    Ok(FirmwareBlob { base, length })
}

fn blob2(data: &[u8]) -> Result<EventData, String> {
    let mut c = Cur::new(data);
    let n = c.u8("BlobDescriptionSize")?;
    let description = String::from_utf8_lossy(c.take(u64::from(n), "BlobDescription")?)
        .trim_end_matches('\0')
        .to_owned();
    let blob = blob(c.rest())?;
    Ok(EventData::FirmwareBlob2 { description, blob })
}

/// The GPT header is the 92-byte `EFI_PARTITION_TABLE_HEADER`.
const GPT_HEADER_LEN: u64 = 92;

fn gpt(data: &[u8]) -> Result<GptData, String> {
    let mut c = Cur::new(data);
    let mut h = Cur::new(c.take(GPT_HEADER_LEN, "UEFIPartitionHeader")?);
    let signature = h.u64("Signature")?;
    let revision = h.u32("Revision")?;
    let header_size = h.u32("HeaderSize")?;
    h.u32("HeaderCRC32")?;
    h.u32("Reserved")?;
    let header = GptHeader {
        signature,
        revision,
        header_size,
        my_lba: h.u64("MyLBA")?,
        alternate_lba: h.u64("AlternateLBA")?,
        first_usable_lba: h.u64("FirstUsableLBA")?,
        last_usable_lba: h.u64("LastUsableLBA")?,
        disk_guid: h.guid("DiskGUID")?,
        partition_entry_lba: h.u64("PartitionEntryLBA")?,
        number_of_partition_entries: h.u32("NumberOfPartitionEntries")?,
        size_of_partition_entry: h.u32("SizeOfPartitionEntry")?,
    };
    let n = c.u64("NumberOfPartitions")?;
    let size = u64::from(header.size_of_partition_entry);
    if size < 128 {
        return Err(format!("SizeOfPartitionEntry {size} is below 128"));
    }
    if n.saturating_mul(size) != c.rest().len() as u64 {
        return Err(format!(
            "{n} partitions of {size} bytes do not fill the {} bytes left",
            c.rest().len()
        ));
    }
    let mut partitions = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let mut e = Cur::new(c.take(size, "partition entry")?);
        partitions.push(GptPartition {
            type_guid: e.guid("PartitionTypeGUID")?,
            unique_guid: e.guid("UniquePartitionGUID")?,
            starting_lba: e.u64("StartingLBA")?,
            ending_lba: e.u64("EndingLBA")?,
            attributes: e.u64("Attributes")?,
            name: utf16le(e.take(72, "PartitionName")?),
        });
    }
    Ok(GptData { header, partitions })
}

fn ascii(data: &[u8], what: &str) -> Result<String, String> {
    text(data).ok_or_else(|| format!("{what} is not UTF-8 text"))
}

/// Decode `data` as the structure `event_type` announces.
pub(crate) fn decode(event_type: EventType, data: &[u8]) -> EventData {
    let decoded = match event_type {
        EventType::NO_ACTION => no_action(data),
        EventType::EFI_VARIABLE_DRIVER_CONFIG
        | EventType::EFI_VARIABLE_BOOT
        | EventType::EFI_VARIABLE_BOOT2
        | EventType::EFI_VARIABLE_AUTHORITY => variable(data).map(|(v, _)| EventData::Variable(v)),
        EventType::EFI_BOOT_SERVICES_APPLICATION
        | EventType::EFI_BOOT_SERVICES_DRIVER
        | EventType::EFI_RUNTIME_SERVICES_DRIVER => image_load(data).map(EventData::ImageLoad),
        EventType::EFI_ACTION | EventType::ACTION | EventType::OMIT_BOOT_DEVICE_EVENTS => {
            ascii(data, "action").map(EventData::Action)
        }
        EventType::IPL => Ok(match text(data) {
            Some(t) => EventData::Ipl(t),
            None => EventData::Opaque,
        }),
        EventType::SEPARATOR => match <[u8; 4]>::try_from(data) {
            Ok(b) => Ok(EventData::Separator(u32::from_le_bytes(b))),
            Err(_) => Err(format!("separator of {} bytes, not 4", data.len())),
        },
        EventType::EFI_GPT_EVENT => gpt(data).map(EventData::Gpt),
        EventType::POST_CODE => {
            if data.len() == 16 {
                blob(data).map(EventData::PostCodeBlob)
            } else {
                ascii(data, "POST code").map(EventData::PostCodeText)
            }
        }
        EventType::EFI_PLATFORM_FIRMWARE_BLOB => blob(data).map(EventData::FirmwareBlob),
        EventType::EFI_PLATFORM_FIRMWARE_BLOB2 => blob2(data),
        EventType::S_CRTM_VERSION => Ok(EventData::CrtmVersion(
            if data.len().is_multiple_of(2)
                && data.len() >= 2
                && data.iter().skip(1).step_by(2).all(|&b| b == 0)
            {
                utf16le(data)
            } else {
                String::from_utf8_lossy(data)
                    .trim_end_matches('\0')
                    .to_owned()
            },
        )),
        _ => Ok(EventData::Opaque),
    };
    decoded.unwrap_or_else(EventData::Malformed)
}

impl DevicePathNode {
    /// The UEFI shell's text for the node types this crate knows, `None` for others.
    fn known_text(&self) -> Option<String> {
        let mut c = Cur::new(&self.data);
        let c = &mut c;
        Some(match (self.node_type, self.subtype) {
            (1, 1) => {
                let (func, dev) = (c.u8("function").ok()?, c.u8("device").ok()?);
                format!("Pci({dev:#x},{func:#x})")
            }
            (2, 1) => match (c.u32("HID").ok()?, c.u32("UID").ok()?) {
                (0x0a03_41d0, uid) => format!("PciRoot({uid:#x})"),
                (0x0a08_41d0, uid) => format!("PcieRoot({uid:#x})"),
                (hid, uid) => format!("Acpi({hid:#x},{uid:#x})"),
            },
            (3, 0x02) => {
                let (t, l) = (c.u16("target").ok()?, c.u16("lun").ok()?);
                format!("Scsi({t:#x},{l:#x})")
            }
            (3, 0x12) => {
                let (h, p, l) = (c.u16("hba").ok()?, c.u16("pm").ok()?, c.u16("lun").ok()?);
                format!("Sata({h:#x},{p:#x},{l:#x})")
            }
            (3, 0x17) => format!("NVMe({:#x})", c.u32("nsid").ok()?),
            (4, 1) => {
                let part = c.u32("partition").ok()?;
                let start = c.u64("start").ok()?;
                let size = c.u64("size").ok()?;
                let sig = c.guid("signature").ok()?;
                match (c.u8("format").ok()?, c.u8("signature type").ok()?) {
                    (2, 2) => format!("HD({part},GPT,{sig},{start:#x},{size:#x})"),
                    _ => format!("HD({part},{start:#x},{size:#x})"),
                }
            }
            (4, 4) => utf16le(&self.data),
            (4, 6) => format!("FvFile({})", c.guid("file").ok()?),
            (4, 8) => {
                c.u32("reserved").ok()?;
                let (start, end) = (c.u64("start").ok()?, c.u64("end").ok()?);
                format!("Offset({start:#x},{end:#x})")
            }
            (4, 7) => format!("Fv({})", c.guid("volume").ok()?),
            (0x7f, 0x01) => ",".to_owned(),
            _ => return None,
        })
    }
}

impl fmt::Display for DevicePathNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.known_text() {
            Some(text) => f.write_str(&text),
            None => {
                write!(
                    f,
                    "Path({},{},{})",
                    self.node_type,
                    self.subtype,
                    hex::encode(&self.data)
                )
            }
        }
    }
}

impl fmt::Display for DevicePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nodes.iter().enumerate() {
            if i > 0 && !(n.node_type == 0x7f && n.subtype == 0x01) {
                f.write_str("/")?;
            }
            write!(f, "{n}")?;
        }
        if !self.trailing.is_empty() {
            write!(f, " (+{} undecoded bytes)", self.trailing.len())?;
        }
        Ok(())
    }
}

impl fmt::Display for EventData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SpecId(s) => {
                write!(
                    f,
                    "Spec ID Event03, spec {}.{} errata {}, banks",
                    s.spec_version_major, s.spec_version_minor, s.spec_errata
                )?;
                for a in &s.algorithms {
                    write!(f, " {}", crate::alg::HashAlg::from_id(a.algorithm_id))?;
                }
                Ok(())
            }
            Self::StartupLocality(l) => write!(f, "StartupLocality {l}"),
            Self::NoAction { signature: Some(s) } => write!(f, "{s}"),
            Self::NoAction { signature: None } => f.write_str("(no signature)"),
            Self::Variable(v) => write!(f, "{}:{} ({} bytes)", v.vendor, v.name, v.data.len()),
            Self::ImageLoad(i) => write!(
                f,
                "{} ({} bytes at {:#x})",
                i.device_path, i.length, i.location
            ),
            Self::Action(s) | Self::Ipl(s) | Self::PostCodeText(s) | Self::CrtmVersion(s) => {
                write!(f, "{:?}", s)
            }
            Self::Separator(v) => write!(f, "{v:#010x}{}", if *v == 1 { " (error)" } else { "" }),
            Self::Gpt(g) => {
                write!(
                    f,
                    "GPT disk {}, {} partitions",
                    g.header.disk_guid,
                    g.partitions.len()
                )?;
                for p in &g.partitions {
                    write!(f, "; {:?} {}..{}", p.name, p.starting_lba, p.ending_lba)?;
                }
                Ok(())
            }
            Self::PostCodeBlob(b) | Self::FirmwareBlob(b) => {
                write!(f, "{:#x} bytes at {:#x}", b.length, b.base)
            }
            Self::FirmwareBlob2 { description, blob } => {
                write!(
                    f,
                    "{description:?}: {:#x} bytes at {:#x}",
                    blob.length, blob.base
                )
            }
            Self::Opaque => f.write_str("(not decoded)"),
            Self::Malformed(reason) => write!(f, "(malformed: {reason})"),
        }
    }
}
