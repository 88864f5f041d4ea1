//! `TPMS_NV_PUBLIC` / `TPM2B_NV_PUBLIC`: an NV index's public area and its TPM name, the
//! name a verifier compares with the one `TPM2_NV_ReadPublic` and `TPM2_NV_Certify` show.

use super::attributes::NvAttributes;
use super::hash::{digest_size, hash};
use super::wire::{Reader, put_tpm2b_bounded};
use crate::Error;

/// `TPMS_NV_PUBLIC`: `nvIndex` u32 | `nameAlg` u16 | `attributes` u32 | `authPolicy`
/// `TPM2B_DIGEST` | `dataSize` u16.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NvPublic {
    /// The index handle (`0x01xxxxxx`).
    pub index: u32,
    /// The name algorithm.
    pub name_alg: u16,
    /// The index attributes.
    pub attributes: NvAttributes,
    /// The authorization policy digest (empty when none).
    pub auth_policy: Vec<u8>,
    /// The index's data size in bytes.
    pub data_size: u16,
}

impl NvPublic {
    /// The marshalled `TPMS_NV_PUBLIC`. An `auth_policy` cannot exceed 65,535 bytes on the
    /// wire; a longer one (never produced by parsing) is cut there.
    pub fn marshal(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(14 + self.auth_policy.len());
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.name_alg.to_be_bytes());
        out.extend_from_slice(&self.attributes.bits().to_be_bytes());
        put_tpm2b_bounded(&mut out, &self.auth_policy);
        out.extend_from_slice(&self.data_size.to_be_bytes());
        out
    }

    /// The `TPM2B_NV_PUBLIC`: u16 size, then the `TPMS_NV_PUBLIC`.
    pub fn to_tpm2b(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_tpm2b_bounded(&mut out, &self.marshal());
        out
    }

    /// Parses a `TPMS_NV_PUBLIC` that fills `bytes` exactly.
    ///
    /// # Errors
    /// `Truncated`, `TrailingBytes`, `UnsupportedAlgorithm` (a nameAlg other than
    /// SHA-1/256/384/512), `InvalidValue` (an `authPolicy` whose size is neither 0 nor the
    /// name algorithm's digest size).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let index = r.u32("TPMS_NV_PUBLIC.nvIndex")?;
        let name_alg = r.u16("TPMS_NV_PUBLIC.nameAlg")?;
        let Some(name_size) = digest_size(name_alg) else {
            return Err(Error::UnsupportedAlgorithm {
                what: "TPMS_NV_PUBLIC.nameAlg",
                alg: name_alg,
            });
        };
        let attributes = NvAttributes(r.u32("TPMS_NV_PUBLIC.attributes")?);
        let auth_policy = r.tpm2b("TPMS_NV_PUBLIC.authPolicy")?.to_vec();
        if !auth_policy.is_empty() && auth_policy.len() != name_size {
            return Err(Error::InvalidValue {
                what: "TPMS_NV_PUBLIC.authPolicy size",
                value: auth_policy.len() as u64,
            });
        }
        let data_size = r.u16("TPMS_NV_PUBLIC.dataSize")?;
        r.finish("TPMS_NV_PUBLIC")?;
        Ok(Self {
            index,
            name_alg,
            attributes,
            auth_policy,
            data_size,
        })
    }

    /// Parses a `TPM2B_NV_PUBLIC`: a u16 size, then exactly that many bytes of
    /// `TPMS_NV_PUBLIC`.
    ///
    /// # Errors
    /// As [`NvPublic::parse`], and `TrailingBytes` after the `TPM2B_NV_PUBLIC`.
    pub fn from_tpm2b(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        let inner = r.tpm2b("TPM2B_NV_PUBLIC")?;
        r.finish("TPM2B_NV_PUBLIC")?;
        Self::parse(inner)
    }

    /// The index's TPM name: `nameAlg` (u16, big-endian) followed by
    /// `H_nameAlg(TPMS_NV_PUBLIC)`.
    ///
    /// For a `name_alg` this crate cannot hash (parsing refuses those; only a value built
    /// by hand can have one) the result is the two algorithm bytes alone, which never
    /// equals a name a TPM reports, so comparisons fail closed.
    pub fn name(&self) -> Vec<u8> {
        let mut name = self.name_alg.to_be_bytes().to_vec();
        name.extend(hash(self.name_alg, &[&self.marshal()]).unwrap_or_default());
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::{TPM_ALG_SHA256, TPM_ALG_SHA384};

    /// The sealing index of docs/protocol.md as swtpm defined it (see testdata/swtpm): index
    /// 0x01500001, SHA-256, POLICYREAD | POLICYWRITE | NO_DA, authPolicy PolicyPCR(23 = 0),
    /// 40 bytes.
    fn sealing() -> NvPublic {
        let policy =
            hex::decode("3c87a4b3fb85ebeea58c5fb36ac22d3f280cec27a9f6dd0fa23be9ce560deec8")
                .unwrap();
        NvPublic {
            index: 0x0150_0001,
            name_alg: TPM_ALG_SHA256,
            attributes: NvAttributes::POLICYREAD | NvAttributes::POLICYWRITE | NvAttributes::NO_DA,
            auth_policy: policy,
            data_size: 40,
        }
    }

    #[test]
    fn marshal_layout_and_name_match_the_tpm() {
        let nv = sealing();
        let tpms = nv.marshal();
        assert_eq!(
            hex::encode(&tpms),
            "01500001000b020800080020\
             3c87a4b3fb85ebeea58c5fb36ac22d3f280cec27a9f6dd0fa23be9ce560deec8\
             0028"
        );
        // The name tpm2_nvreadpublic printed for this index on swtpm.
        assert_eq!(
            hex::encode(nv.name()),
            "000b68767777d1ca89801f90ab3cc168a4a5859928022c41eff406f51c4a2beaad66"
        );
        let tpm2b = nv.to_tpm2b();
        assert_eq!(&tpm2b[..2], &[0x00, 0x2e]);
        assert_eq!(&tpm2b[2..], tpms.as_slice());
        assert_eq!(NvPublic::from_tpm2b(&tpm2b).unwrap(), nv);
        assert_eq!(NvPublic::parse(&tpms).unwrap(), nv);
    }

    #[test]
    fn framing_and_field_errors() {
        let tpm2b = sealing().to_tpm2b();
        let mut trailing = tpm2b.clone();
        trailing.push(0);
        assert_eq!(
            NvPublic::from_tpm2b(&trailing),
            Err(Error::TrailingBytes {
                what: "TPM2B_NV_PUBLIC"
            })
        );
        let mut inner = sealing().marshal();
        inner.push(0);
        assert_eq!(
            NvPublic::parse(&inner),
            Err(Error::TrailingBytes {
                what: "TPMS_NV_PUBLIC"
            })
        );
        for len in 0..tpm2b.len() {
            assert!(matches!(
                NvPublic::from_tpm2b(&tpm2b[..len]),
                Err(Error::Truncated { .. })
            ));
        }
        let mut sm3 = sealing();
        sm3.name_alg = 0x0012;
        assert_eq!(
            NvPublic::parse(&sm3.marshal()),
            Err(Error::UnsupportedAlgorithm {
                what: "TPMS_NV_PUBLIC.nameAlg",
                alg: 0x0012
            })
        );
        // A hand-built value with an unhashable nameAlg has a name that matches nothing.
        assert_eq!(sm3.name(), vec![0x00, 0x12]);
        let mut short_policy = sealing();
        short_policy.name_alg = TPM_ALG_SHA384;
        assert_eq!(
            NvPublic::parse(&short_policy.marshal()),
            Err(Error::InvalidValue {
                what: "TPMS_NV_PUBLIC.authPolicy size",
                value: 32
            })
        );
        let mut no_policy = sealing();
        no_policy.auth_policy.clear();
        assert_eq!(NvPublic::parse(&no_policy.marshal()).unwrap(), no_policy);
    }
}
