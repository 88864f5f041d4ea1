//! Event types of the TCG PC Client Platform Firmware Profile (`EV_*`). The type is *not*
//! covered by an event's digest: it says how to read the data, never whether to trust it.

use std::fmt;

/// An event's type field. Unknown values are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(pub u32);

const EFI: u32 = 0x8000_0000;

impl EventType {
    /// `EV_PREBOOT_CERT`.
    pub const PREBOOT_CERT: Self = Self(0x0);
    /// `EV_POST_CODE`.
    pub const POST_CODE: Self = Self(0x1);
    /// `EV_UNUSED`.
    pub const UNUSED: Self = Self(0x2);
    /// `EV_NO_ACTION`: informational, never extended into a PCR.
    pub const NO_ACTION: Self = Self(0x3);
    /// `EV_SEPARATOR`.
    pub const SEPARATOR: Self = Self(0x4);
    /// `EV_ACTION`.
    pub const ACTION: Self = Self(0x5);
    /// `EV_EVENT_TAG`.
    pub const EVENT_TAG: Self = Self(0x6);
    /// `EV_S_CRTM_CONTENTS`.
    pub const S_CRTM_CONTENTS: Self = Self(0x7);
    /// `EV_S_CRTM_VERSION`.
    pub const S_CRTM_VERSION: Self = Self(0x8);
    /// `EV_CPU_MICROCODE`.
    pub const CPU_MICROCODE: Self = Self(0x9);
    /// `EV_PLATFORM_CONFIG_FLAGS`.
    pub const PLATFORM_CONFIG_FLAGS: Self = Self(0xA);
    /// `EV_TABLE_OF_DEVICES`.
    pub const TABLE_OF_DEVICES: Self = Self(0xB);
    /// `EV_COMPACT_HASH`.
    pub const COMPACT_HASH: Self = Self(0xC);
    /// `EV_IPL`.
    pub const IPL: Self = Self(0xD);
    /// `EV_IPL_PARTITION_DATA`.
    pub const IPL_PARTITION_DATA: Self = Self(0xE);
    /// `EV_NONHOST_CODE`.
    pub const NONHOST_CODE: Self = Self(0xF);
    /// `EV_NONHOST_CONFIG`.
    pub const NONHOST_CONFIG: Self = Self(0x10);
    /// `EV_NONHOST_INFO`.
    pub const NONHOST_INFO: Self = Self(0x11);
    /// `EV_OMIT_BOOT_DEVICE_EVENTS`.
    pub const OMIT_BOOT_DEVICE_EVENTS: Self = Self(0x12);
    /// `EV_POST_CODE2`.
    pub const POST_CODE2: Self = Self(0x13);
    /// `EV_EFI_EVENT_BASE`.
    pub const EFI_EVENT_BASE: Self = Self(EFI);
    /// `EV_EFI_VARIABLE_DRIVER_CONFIG`.
    pub const EFI_VARIABLE_DRIVER_CONFIG: Self = Self(EFI + 0x1);
    /// `EV_EFI_VARIABLE_BOOT`.
    pub const EFI_VARIABLE_BOOT: Self = Self(EFI + 0x2);
    /// `EV_EFI_BOOT_SERVICES_APPLICATION`.
    pub const EFI_BOOT_SERVICES_APPLICATION: Self = Self(EFI + 0x3);
    /// `EV_EFI_BOOT_SERVICES_DRIVER`.
    pub const EFI_BOOT_SERVICES_DRIVER: Self = Self(EFI + 0x4);
    /// `EV_EFI_RUNTIME_SERVICES_DRIVER`.
    pub const EFI_RUNTIME_SERVICES_DRIVER: Self = Self(EFI + 0x5);
    /// `EV_EFI_GPT_EVENT`.
    pub const EFI_GPT_EVENT: Self = Self(EFI + 0x6);
    /// `EV_EFI_ACTION`.
    pub const EFI_ACTION: Self = Self(EFI + 0x7);
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB`.
    pub const EFI_PLATFORM_FIRMWARE_BLOB: Self = Self(EFI + 0x8);
    /// `EV_EFI_HANDOFF_TABLES`.
    pub const EFI_HANDOFF_TABLES: Self = Self(EFI + 0x9);
    /// `EV_EFI_PLATFORM_FIRMWARE_BLOB2`.
    pub const EFI_PLATFORM_FIRMWARE_BLOB2: Self = Self(EFI + 0xA);
    /// `EV_EFI_HANDOFF_TABLES2`.
    pub const EFI_HANDOFF_TABLES2: Self = Self(EFI + 0xB);
    /// `EV_EFI_VARIABLE_BOOT2`.
    pub const EFI_VARIABLE_BOOT2: Self = Self(EFI + 0xC);
    /// `EV_EFI_GPT_EVENT2`.
    pub const EFI_GPT_EVENT2: Self = Self(EFI + 0xD);
    /// `EV_EFI_HCRTM_EVENT`.
    pub const EFI_HCRTM_EVENT: Self = Self(EFI + 0x10);
    /// `EV_EFI_VARIABLE_AUTHORITY`.
    pub const EFI_VARIABLE_AUTHORITY: Self = Self(EFI + 0xE0);
    /// `EV_EFI_SPDM_FIRMWARE_BLOB`.
    pub const EFI_SPDM_FIRMWARE_BLOB: Self = Self(EFI + 0xE1);
    /// `EV_EFI_SPDM_FIRMWARE_CONFIG`.
    pub const EFI_SPDM_FIRMWARE_CONFIG: Self = Self(EFI + 0xE2);

    /// The specification's name, e.g. `EV_SEPARATOR`, or `None` for an unknown value.
    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::PREBOOT_CERT => "EV_PREBOOT_CERT",
            Self::POST_CODE => "EV_POST_CODE",
            Self::UNUSED => "EV_UNUSED",
            Self::NO_ACTION => "EV_NO_ACTION",
            Self::SEPARATOR => "EV_SEPARATOR",
            Self::ACTION => "EV_ACTION",
            Self::EVENT_TAG => "EV_EVENT_TAG",
            Self::S_CRTM_CONTENTS => "EV_S_CRTM_CONTENTS",
            Self::S_CRTM_VERSION => "EV_S_CRTM_VERSION",
            Self::CPU_MICROCODE => "EV_CPU_MICROCODE",
            Self::PLATFORM_CONFIG_FLAGS => "EV_PLATFORM_CONFIG_FLAGS",
            Self::TABLE_OF_DEVICES => "EV_TABLE_OF_DEVICES",
            Self::COMPACT_HASH => "EV_COMPACT_HASH",
            Self::IPL => "EV_IPL",
            Self::IPL_PARTITION_DATA => "EV_IPL_PARTITION_DATA",
            Self::NONHOST_CODE => "EV_NONHOST_CODE",
            Self::NONHOST_CONFIG => "EV_NONHOST_CONFIG",
            Self::NONHOST_INFO => "EV_NONHOST_INFO",
            Self::OMIT_BOOT_DEVICE_EVENTS => "EV_OMIT_BOOT_DEVICE_EVENTS",
            Self::POST_CODE2 => "EV_POST_CODE2",
            Self::EFI_EVENT_BASE => "EV_EFI_EVENT_BASE",
            Self::EFI_VARIABLE_DRIVER_CONFIG => "EV_EFI_VARIABLE_DRIVER_CONFIG",
            Self::EFI_VARIABLE_BOOT => "EV_EFI_VARIABLE_BOOT",
            Self::EFI_BOOT_SERVICES_APPLICATION => "EV_EFI_BOOT_SERVICES_APPLICATION",
            Self::EFI_BOOT_SERVICES_DRIVER => "EV_EFI_BOOT_SERVICES_DRIVER",
            Self::EFI_RUNTIME_SERVICES_DRIVER => "EV_EFI_RUNTIME_SERVICES_DRIVER",
            Self::EFI_GPT_EVENT => "EV_EFI_GPT_EVENT",
            Self::EFI_ACTION => "EV_EFI_ACTION",
            Self::EFI_PLATFORM_FIRMWARE_BLOB => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
            Self::EFI_HANDOFF_TABLES => "EV_EFI_HANDOFF_TABLES",
            Self::EFI_PLATFORM_FIRMWARE_BLOB2 => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            Self::EFI_HANDOFF_TABLES2 => "EV_EFI_HANDOFF_TABLES2",
            Self::EFI_VARIABLE_BOOT2 => "EV_EFI_VARIABLE_BOOT2",
            Self::EFI_GPT_EVENT2 => "EV_EFI_GPT_EVENT2",
            Self::EFI_HCRTM_EVENT => "EV_EFI_HCRTM_EVENT",
            Self::EFI_VARIABLE_AUTHORITY => "EV_EFI_VARIABLE_AUTHORITY",
            Self::EFI_SPDM_FIRMWARE_BLOB => "EV_EFI_SPDM_FIRMWARE_BLOB",
            Self::EFI_SPDM_FIRMWARE_CONFIG => "EV_EFI_SPDM_FIRMWARE_CONFIG",
            _ => return None,
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "EV_UNKNOWN({:#010x})", self.0),
        }
    }
}
