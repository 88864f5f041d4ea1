//! TPM hash algorithms as they appear in event logs (`TPM_ALG_ID`), their digest sizes and the
//! PCR extend operation for the ones this crate can compute.

use std::fmt;

use sha1::Sha1;
use sha2::{Digest as _, Sha256, Sha384, Sha512};

/// A hash algorithm named by its TCG `TPM_ALG_ID`.
///
/// Algorithms this crate cannot compute (SM3, SHA-3, unknown ids) are still carried, so a log
/// that declares such a bank parses; replay reports those banks as unsupported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HashAlg {
    /// `TPM_ALG_SHA1` (0x0004), 20 bytes.
    Sha1,
    /// `TPM_ALG_SHA256` (0x000B), 32 bytes.
    Sha256,
    /// `TPM_ALG_SHA384` (0x000C), 48 bytes.
    Sha384,
    /// `TPM_ALG_SHA512` (0x000D), 64 bytes.
    Sha512,
    /// `TPM_ALG_SM3_256` (0x0012), 32 bytes; parsed, not computed.
    Sm3_256,
    /// `TPM_ALG_SHA3_256` (0x0027), 32 bytes; parsed, not computed.
    Sha3_256,
    /// `TPM_ALG_SHA3_384` (0x0028), 48 bytes; parsed, not computed.
    Sha3_384,
    /// `TPM_ALG_SHA3_512` (0x0029), 64 bytes; parsed, not computed.
    Sha3_512,
    /// Any other algorithm id; its digest size comes from the log's Spec ID event.
    Other(u16),
}

impl HashAlg {
    /// The algorithm for a `TPM_ALG_ID`.
    pub fn from_id(id: u16) -> Self {
        match id {
            0x0004 => Self::Sha1,
            0x000B => Self::Sha256,
            0x000C => Self::Sha384,
            0x000D => Self::Sha512,
            0x0012 => Self::Sm3_256,
            0x0027 => Self::Sha3_256,
            0x0028 => Self::Sha3_384,
            0x0029 => Self::Sha3_512,
            other => Self::Other(other),
        }
    }

    /// The `TPM_ALG_ID`.
    pub fn id(self) -> u16 {
        match self {
            Self::Sha1 => 0x0004,
            Self::Sha256 => 0x000B,
            Self::Sha384 => 0x000C,
            Self::Sha512 => 0x000D,
            Self::Sm3_256 => 0x0012,
            Self::Sha3_256 => 0x0027,
            Self::Sha3_384 => 0x0028,
            Self::Sha3_512 => 0x0029,
            Self::Other(id) => id,
        }
    }

    /// The digest size in bytes, where the algorithm is known.
    pub fn known_size(self) -> Option<usize> {
        match self {
            Self::Sha1 => Some(20),
            Self::Sha256 | Self::Sm3_256 | Self::Sha3_256 => Some(32),
            Self::Sha384 | Self::Sha3_384 => Some(48),
            Self::Sha512 | Self::Sha3_512 => Some(64),
            Self::Other(_) => None,
        }
    }

    /// The lowercase name used in JSON output (`sha1`, `sha256`, …; `alg_0x1234` if unknown),
    /// as `tpm2_eventlog` names banks.
    pub fn name(self) -> String {
        match self {
            Self::Sha1 => "sha1".into(),
            Self::Sha256 => "sha256".into(),
            Self::Sha384 => "sha384".into(),
            Self::Sha512 => "sha512".into(),
            Self::Sm3_256 => "sm3_256".into(),
            Self::Sha3_256 => "sha3_256".into(),
            Self::Sha3_384 => "sha3_384".into(),
            Self::Sha3_512 => "sha3_512".into(),
            Self::Other(id) => format!("alg_{id:#06x}"),
        }
    }

    /// Whether this crate can hash with the algorithm (and so replay its bank).
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            Self::Sha1 | Self::Sha256 | Self::Sha384 | Self::Sha512
        )
    }

    /// Hash `parts` concatenated, or `None` for an algorithm this crate does not compute.
    pub fn hash(self, parts: &[&[u8]]) -> Option<Vec<u8>> {
        fn run<D: sha2::Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().to_vec()
        }
        match self {
            Self::Sha1 => Some(run::<Sha1>(parts)),
            Self::Sha256 => Some(run::<Sha256>(parts)),
            Self::Sha384 => Some(run::<Sha384>(parts)),
            Self::Sha512 => Some(run::<Sha512>(parts)),
            _ => None,
        }
    }

    /// `PCR_new = H(PCR_old || digest)`, in place; `false` (and `pcr` untouched) for an
    /// algorithm this crate does not compute.
    pub fn extend(self, pcr: &mut Vec<u8>, digest: &[u8]) -> bool {
        match self.hash(&[pcr, digest]) {
            Some(new) => {
                *pcr = new;
                true
            }
            None => false,
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// `sha256(data)` as an array.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `sha256(pcr || digest)`: one SHA-256 PCR extend.
pub fn sha256_extend(pcr: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(pcr)
        .chain_update(digest)
        .finalize()
        .into()
}
