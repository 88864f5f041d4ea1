//! The attribute bit fields of objects (`TPMA_OBJECT`) and NV indices (`TPMA_NV`), with
//! `Debug` output that names each set bit.

use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// Writes `Name(0x…: A | B | 0x…)`, naming each known bit and showing unknown bits in hex.
fn fmt_bits(
    f: &mut fmt::Formatter<'_>,
    type_name: &str,
    bits: u32,
    names: &[(u32, &str)],
) -> fmt::Result {
    write!(f, "{type_name}({bits:#010x}")?;
    let mut rest = bits;
    let mut first = true;
    for &(bit, name) in names {
        if bits & bit != 0 {
            f.write_str(if first { ": " } else { " | " })?;
            f.write_str(name)?;
            rest &= !bit;
            first = false;
        }
    }
    if rest != 0 {
        f.write_str(if first { ": " } else { " | " })?;
        write!(f, "{rest:#x}")?;
    }
    f.write_str(")")
}

/// `TPMA_OBJECT`: the attributes of a TPM object (Part 2, "TPMA_OBJECT").
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ObjectAttributes(pub u32);

impl ObjectAttributes {
    /// `fixedTPM`: the object cannot be duplicated out of this TPM.
    pub const FIXED_TPM: Self = Self(1 << 1);
    /// `stClear`: the object is flushed on TPM Restart.
    pub const ST_CLEAR: Self = Self(1 << 2);
    /// `fixedParent`: the object cannot be moved to another parent.
    pub const FIXED_PARENT: Self = Self(1 << 4);
    /// `sensitiveDataOrigin`: the TPM generated the sensitive part.
    pub const SENSITIVE_DATA_ORIGIN: Self = Self(1 << 5);
    /// `userWithAuth`: the USER role can be authorised with the auth value.
    pub const USER_WITH_AUTH: Self = Self(1 << 6);
    /// `adminWithPolicy`: the ADMIN role needs a policy session.
    pub const ADMIN_WITH_POLICY: Self = Self(1 << 7);
    /// `noDA`: not subject to dictionary-attack protection.
    pub const NO_DA: Self = Self(1 << 10);
    /// `encryptedDuplication`: duplication requires an encrypted inner wrapper.
    pub const ENCRYPTED_DUPLICATION: Self = Self(1 << 11);
    /// `restricted`: the key signs only TPM-generated structures (or decrypts only
    /// TPM-formatted data).
    pub const RESTRICTED: Self = Self(1 << 16);
    /// `decrypt`: a decryption (or parent) key.
    pub const DECRYPT: Self = Self(1 << 17);
    /// `sign` / `encrypt`: a signing key.
    pub const SIGN_ENCRYPT: Self = Self(1 << 18);

    const NAMES: [(u32, &'static str); 11] = [
        (Self::FIXED_TPM.0, "FIXED_TPM"),
        (Self::ST_CLEAR.0, "ST_CLEAR"),
        (Self::FIXED_PARENT.0, "FIXED_PARENT"),
        (Self::SENSITIVE_DATA_ORIGIN.0, "SENSITIVE_DATA_ORIGIN"),
        (Self::USER_WITH_AUTH.0, "USER_WITH_AUTH"),
        (Self::ADMIN_WITH_POLICY.0, "ADMIN_WITH_POLICY"),
        (Self::NO_DA.0, "NO_DA"),
        (Self::ENCRYPTED_DUPLICATION.0, "ENCRYPTED_DUPLICATION"),
        (Self::RESTRICTED.0, "RESTRICTED"),
        (Self::DECRYPT.0, "DECRYPT"),
        (Self::SIGN_ENCRYPT.0, "SIGN_ENCRYPT"),
    ];

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set here.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }
}

impl BitOr for ObjectAttributes {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for ObjectAttributes {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for ObjectAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_bits(f, "ObjectAttributes", self.0, &Self::NAMES)
    }
}

/// `TPMA_NV`: the attributes of an NV index (Part 2, "TPMA_NV"). Bits 4..=7 hold the
/// index type `TPM_NT` (see [`NvAttributes::nt`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NvAttributes(pub u32);

impl NvAttributes {
    /// `TPMA_NV_PPWRITE`: platform authorization may write.
    pub const PPWRITE: Self = Self(1 << 0);
    /// `TPMA_NV_OWNERWRITE`: owner authorization may write.
    pub const OWNERWRITE: Self = Self(1 << 1);
    /// `TPMA_NV_AUTHWRITE`: the index's auth value may authorise writes.
    pub const AUTHWRITE: Self = Self(1 << 2);
    /// `TPMA_NV_POLICYWRITE`: the index's policy may authorise writes.
    pub const POLICYWRITE: Self = Self(1 << 3);
    /// `TPMA_NV_POLICY_DELETE`: deletion needs the policy and platform authorization.
    pub const POLICY_DELETE: Self = Self(1 << 10);
    /// `TPMA_NV_WRITELOCKED`: writes are locked.
    pub const WRITELOCKED: Self = Self(1 << 11);
    /// `TPMA_NV_WRITEALL`: a write must fill the whole index.
    pub const WRITEALL: Self = Self(1 << 12);
    /// `TPMA_NV_WRITEDEFINE`: `TPM2_NV_WriteLock` locks writes permanently.
    pub const WRITEDEFINE: Self = Self(1 << 13);
    /// `TPMA_NV_WRITE_STCLEAR`: `TPM2_NV_WriteLock` locks writes until TPM Reset/Restart.
    pub const WRITE_STCLEAR: Self = Self(1 << 14);
    /// `TPMA_NV_GLOBALLOCK`: `TPM2_NV_GlobalWriteLock` applies.
    pub const GLOBALLOCK: Self = Self(1 << 15);
    /// `TPMA_NV_PPREAD`: platform authorization may read.
    pub const PPREAD: Self = Self(1 << 16);
    /// `TPMA_NV_OWNERREAD`: owner authorization may read.
    pub const OWNERREAD: Self = Self(1 << 17);
    /// `TPMA_NV_AUTHREAD`: the index's auth value may authorise reads.
    pub const AUTHREAD: Self = Self(1 << 18);
    /// `TPMA_NV_POLICYREAD`: the index's policy may authorise reads.
    pub const POLICYREAD: Self = Self(1 << 19);
    /// `TPMA_NV_NO_DA`: not subject to dictionary-attack protection.
    pub const NO_DA: Self = Self(1 << 25);
    /// `TPMA_NV_ORDERLY`: the index's state is saved only on orderly shutdown.
    pub const ORDERLY: Self = Self(1 << 26);
    /// `TPMA_NV_CLEAR_STCLEAR`: `WRITTEN` is cleared by TPM Reset/Restart.
    pub const CLEAR_STCLEAR: Self = Self(1 << 27);
    /// `TPMA_NV_READLOCKED`: reads are locked.
    pub const READLOCKED: Self = Self(1 << 28);
    /// `TPMA_NV_WRITTEN`: the index has been written.
    pub const WRITTEN: Self = Self(1 << 29);
    /// `TPMA_NV_PLATFORMCREATE`: defined with platform authorization.
    pub const PLATFORMCREATE: Self = Self(1 << 30);
    /// `TPMA_NV_READ_STCLEAR`: `TPM2_NV_ReadLock` locks reads until TPM Reset/Restart.
    pub const READ_STCLEAR: Self = Self(1 << 31);

    /// Mask of the `TPM_NT` field (bits 4..=7).
    pub const NT_MASK: u32 = 0xF0;
    /// `TPM_NT_ORDINARY`: an ordinary data index.
    pub const NT_ORDINARY: u8 = 0x0;
    /// `TPM_NT_COUNTER`: a monotonic counter.
    pub const NT_COUNTER: u8 = 0x1;
    /// `TPM_NT_BITS`: a bit field.
    pub const NT_BITS: u8 = 0x2;
    /// `TPM_NT_EXTEND`: a PCR-like extend index.
    pub const NT_EXTEND: u8 = 0x4;
    /// `TPM_NT_PIN_FAIL`.
    pub const NT_PIN_FAIL: u8 = 0x8;
    /// `TPM_NT_PIN_PASS`.
    pub const NT_PIN_PASS: u8 = 0x9;

    const NAMES: [(u32, &'static str); 21] = [
        (Self::PPWRITE.0, "PPWRITE"),
        (Self::OWNERWRITE.0, "OWNERWRITE"),
        (Self::AUTHWRITE.0, "AUTHWRITE"),
        (Self::POLICYWRITE.0, "POLICYWRITE"),
        (Self::POLICY_DELETE.0, "POLICY_DELETE"),
        (Self::WRITELOCKED.0, "WRITELOCKED"),
        (Self::WRITEALL.0, "WRITEALL"),
        (Self::WRITEDEFINE.0, "WRITEDEFINE"),
        (Self::WRITE_STCLEAR.0, "WRITE_STCLEAR"),
        (Self::GLOBALLOCK.0, "GLOBALLOCK"),
        (Self::PPREAD.0, "PPREAD"),
        (Self::OWNERREAD.0, "OWNERREAD"),
        (Self::AUTHREAD.0, "AUTHREAD"),
        (Self::POLICYREAD.0, "POLICYREAD"),
        (Self::NO_DA.0, "NO_DA"),
        (Self::ORDERLY.0, "ORDERLY"),
        (Self::CLEAR_STCLEAR.0, "CLEAR_STCLEAR"),
        (Self::READLOCKED.0, "READLOCKED"),
        (Self::WRITTEN.0, "WRITTEN"),
        (Self::PLATFORMCREATE.0, "PLATFORMCREATE"),
        (Self::READ_STCLEAR.0, "READ_STCLEAR"),
    ];

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set here.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// The index type `TPM_NT` (bits 4..=7); [`NvAttributes::NT_ORDINARY`] is 0.
    pub const fn nt(self) -> u8 {
        // The mask keeps four bits, so the value fits a u8.
        ((self.0 & Self::NT_MASK) >> 4) as u8
    }
}

impl BitOr for NvAttributes {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for NvAttributes {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for NvAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nt = self.nt();
        let without_nt = self.0 & !Self::NT_MASK;
        fmt_bits(f, "NvAttributes", without_nt, &Self::NAMES)?;
        if nt != 0 {
            write!(f, " + TPM_NT {nt:#x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_bits_are_part_2_positions() {
        // A typical AK: fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth |
        // restricted | sign = 0x00050072 (tpm2_createak's default attributes).
        let ak = ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN
            | ObjectAttributes::USER_WITH_AUTH
            | ObjectAttributes::RESTRICTED
            | ObjectAttributes::SIGN_ENCRYPT;
        assert_eq!(ak.bits(), 0x0005_0072);
        assert!(ak.contains(ObjectAttributes::RESTRICTED | ObjectAttributes::SIGN_ENCRYPT));
        assert!(!ak.contains(ObjectAttributes::DECRYPT));
        assert!(!ak.intersects(ObjectAttributes::DECRYPT | ObjectAttributes::ADMIN_WITH_POLICY));
        assert_eq!(ObjectAttributes::NO_DA.bits(), 0x400);
        assert_eq!(ObjectAttributes::ENCRYPTED_DUPLICATION.bits(), 0x800);
        assert_eq!(ObjectAttributes::DECRYPT.bits(), 0x2_0000);
        assert_eq!(ObjectAttributes::ST_CLEAR.bits(), 0x4);
        assert_eq!(ObjectAttributes::ADMIN_WITH_POLICY.bits(), 0x80);
    }

    #[test]
    fn object_debug_names_bits() {
        let a = ObjectAttributes(0x0005_0072 | 0x8000_0000);
        assert_eq!(
            format!("{a:?}"),
            "ObjectAttributes(0x80050072: FIXED_TPM | FIXED_PARENT | SENSITIVE_DATA_ORIGIN | \
             USER_WITH_AUTH | RESTRICTED | SIGN_ENCRYPT | 0x80000000)"
        );
        assert_eq!(
            format!("{:?}", ObjectAttributes(0)),
            "ObjectAttributes(0x00000000)"
        );
    }

    #[test]
    fn nv_bits_and_type() {
        // docs/protocol.md: POLICYREAD | POLICYWRITE | NO_DA, and WRITTEN after the first write.
        let sealing = NvAttributes::POLICYREAD | NvAttributes::POLICYWRITE | NvAttributes::NO_DA;
        assert_eq!(sealing.bits(), 0x0208_0008);
        let mut written = sealing;
        written |= NvAttributes::WRITTEN;
        assert_eq!(written.bits(), 0x2208_0008);
        assert_eq!(written.nt(), NvAttributes::NT_ORDINARY);
        assert_eq!(
            format!("{written:?}"),
            "NvAttributes(0x22080008: POLICYWRITE | POLICYREAD | NO_DA | WRITTEN)"
        );
        let counter = NvAttributes(0x0000_0010 | NvAttributes::OWNERREAD.bits());
        assert_eq!(counter.nt(), NvAttributes::NT_COUNTER);
        assert_eq!(
            format!("{counter:?}"),
            "NvAttributes(0x00020000: OWNERREAD) + TPM_NT 0x1"
        );
        assert_eq!(NvAttributes::READ_STCLEAR.bits(), 0x8000_0000);
        assert_eq!(NvAttributes::PLATFORMCREATE.bits(), 0x4000_0000);
        assert_eq!(NvAttributes::OWNERWRITE.bits(), 0x2);
        assert_eq!(NvAttributes::AUTHREAD.bits(), 0x4_0000);
    }
}
