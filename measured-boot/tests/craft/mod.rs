//! Builders for crafted firmware logs, byte by byte as the TCG PC Client Platform Firmware
//! Profile lays them out, shared by the test files that `mod craft;` this; and the two
//! committed crypto-agile fixtures with incomplete banks (`tests/fixtures/`), built here so
//! that what they contain is readable.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};

pub const NO_ACTION: u32 = 3;
pub const SEPARATOR: u32 = 4;
pub const S_CRTM_VERSION: u32 = 8;
pub const IPL: u32 = 0xD;
pub const EFI_ACTION: u32 = 0x8000_0007;
pub const VAR_DRIVER_CONFIG: u32 = 0x8000_0001;
pub const VAR_BOOT: u32 = 0x8000_0002;

/// `TPM_ALG_ID`s.
pub const SHA1: u16 = 4;
pub const SHA256: u16 = 11;
pub const SHA384: u16 = 12;
pub const SHA512: u16 = 13;

/// A Spec ID event (legacy framing) declaring `algs` as (id, size).
pub fn spec_id(algs: &[(u16, u16)]) -> Vec<u8> {
    let mut data = b"Spec ID Event03\0".to_vec();
    data.extend(0u32.to_le_bytes()); // platformClass
    data.extend([0, 2, 0, 2]); // minor, major, errata, uintnSize
    data.extend((algs.len() as u32).to_le_bytes());
    for (id, size) in algs {
        data.extend(id.to_le_bytes());
        data.extend(size.to_le_bytes());
    }
    data.push(0); // vendorInfoSize
    legacy_event(0, NO_ACTION, &[0; 20], &data)
}

/// A legacy `TCG_PCClientPCREvent`.
pub fn legacy_event(pcr: u32, ty: u32, digest: &[u8; 20], data: &[u8]) -> Vec<u8> {
    let mut v = pcr.to_le_bytes().to_vec();
    v.extend(ty.to_le_bytes());
    v.extend(digest);
    v.extend((data.len() as u32).to_le_bytes());
    v.extend(data);
    v
}

/// A crypto-agile `TCG_PCR_EVENT2` carrying exactly `digests` as (algorithm id, digest).
pub fn agile_event(pcr: u32, ty: u32, digests: &[(u16, Vec<u8>)], data: &[u8]) -> Vec<u8> {
    let mut v = pcr.to_le_bytes().to_vec();
    v.extend(ty.to_le_bytes());
    v.extend((digests.len() as u32).to_le_bytes());
    for (id, d) in digests {
        v.extend(id.to_le_bytes());
        v.extend(d);
    }
    v.extend((data.len() as u32).to_le_bytes());
    v.extend(data);
    v
}

pub fn sha1(d: &[u8]) -> Vec<u8> {
    Sha1::digest(d).to_vec()
}
pub fn sha256(d: &[u8]) -> Vec<u8> {
    Sha256::digest(d).to_vec()
}
pub fn sha384(d: &[u8]) -> Vec<u8> {
    Sha384::digest(d).to_vec()
}
pub fn sha512(d: &[u8]) -> Vec<u8> {
    Sha512::digest(d).to_vec()
}

/// The digest of `data` in the bank `alg` (one of the four ids above).
#[allow(clippy::panic)] // test helper: another algorithm is a mistake in the test
pub fn hash(alg: u16, data: &[u8]) -> Vec<u8> {
    match alg {
        SHA1 => sha1(data),
        SHA256 => sha256(data),
        SHA384 => sha384(data),
        SHA512 => sha512(data),
        other => panic!("no hash for algorithm {other:#x}"),
    }
}

/// An event measuring `data` itself in the banks `algs`.
pub fn measured_in(algs: &[u16], pcr: u32, ty: u32, data: &[u8]) -> Vec<u8> {
    let digests: Vec<(u16, Vec<u8>)> = algs.iter().map(|&a| (a, hash(a, data))).collect();
    agile_event(pcr, ty, &digests, data)
}

/// An event in a SHA-1 + SHA-256 log measuring `data` itself.
pub fn measured(pcr: u32, ty: u32, data: &[u8]) -> Vec<u8> {
    measured_in(&[SHA1, SHA256], pcr, ty, data)
}

/// `PCR = SHA-256(PCR || digest)`.
pub fn extend256(pcr: &[u8], d: &[u8]) -> Vec<u8> {
    Sha256::new()
        .chain_update(pcr)
        .chain_update(d)
        .finalize()
        .to_vec()
}

/// A `UEFI_VARIABLE_DATA` of the EFI global variable GUID.
pub fn variable_data(name: &str, value: &[u8]) -> Vec<u8> {
    let mut v = [
        0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11, 0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b,
        0x8c,
    ]
    .to_vec();
    let units: Vec<u16> = name.encode_utf16().collect();
    v.extend((units.len() as u64).to_le_bytes());
    v.extend((value.len() as u64).to_le_bytes());
    for u in units {
        v.extend(u.to_le_bytes());
    }
    v.extend(value);
    v
}

/// A small boot as firmware logs it, after the Spec ID event: the S-CRTM version in PCR 0,
/// `SecureBoot` = 1 in PCR 7, the separators of PCRs 0 to 7 and the boot-option action in
/// PCR 4. Every event carries `carried`, except the `SecureBoot` event, which carries
/// `secure_boot_carries`. No StartupLocality event: `tpm2_eventlog` 5.4, which the tests
/// compare with, extends its digest into PCR 0 instead of starting PCR 0 at the locality.
fn small_boot(carried: &[u16], secure_boot_carries: &[u16]) -> Vec<u8> {
    let mut log = Vec::new();
    let version: Vec<u8> = "1.0\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
    log.extend(measured_in(carried, 0, S_CRTM_VERSION, &version));
    log.extend(measured_in(
        secure_boot_carries,
        7,
        VAR_DRIVER_CONFIG,
        &variable_data("SecureBoot", &[1]),
    ));
    for pcr in 0..8 {
        log.extend(measured_in(carried, pcr, SEPARATOR, &[0; 4]));
    }
    log.extend(measured_in(
        carried,
        4,
        EFI_ACTION,
        b"Calling EFI Application from Boot Option",
    ));
    log
}

/// `tests/fixtures/agile_4_banks_sha1_sha256_carried.bin`: sha1, sha256, sha384 and sha512
/// declared, every event carrying sha1 and sha256 only (as real firmware does).
pub fn four_banks_two_carried() -> Vec<u8> {
    let mut log = spec_id(&[(SHA1, 20), (SHA256, 32), (SHA384, 48), (SHA512, 64)]);
    log.extend(small_boot(&[SHA1, SHA256], &[SHA1, SHA256]));
    log
}

/// `tests/fixtures/agile_sha256_incomplete.bin`: sha1 and sha256 declared; the `SecureBoot`
/// event (event 2, PCR 7) carries sha1 only, every other event both.
pub fn sha256_incomplete() -> Vec<u8> {
    let mut log = spec_id(&[(SHA1, 20), (SHA256, 32)]);
    log.extend(small_boot(&[SHA1, SHA256], &[SHA1]));
    log
}

/// Events that extend a PCR in [`small_boot`]: the S-CRTM version, `SecureBoot`, eight
/// separators and the action.
pub const SMALL_BOOT_EXTENDING: usize = 11;
