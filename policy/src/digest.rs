//! TPM policy digests computed in software, equal to what a TPM trial session (or a
//! policy session) accumulates in `policyDigest` for SHA-256 sessions: PolicyPCR,
//! PolicyCommandCode and PolicyAuthValue.

use std::fmt;

use crate::Error;
use crate::tpm::hash::sha256;
use crate::tpm::{
    PcrSelection, PcrValues, TPM_CC_POLICY_AUTH_VALUE, TPM_CC_POLICY_COMMAND_CODE,
    TPM_CC_POLICY_PCR, pcr_digest,
};

/// The `policyDigest` of a SHA-256 policy session. Starts all-zero; each policy command
/// extends it as `SHA-256(old || TPM_CC_Policy… || parameters)`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PolicyDigest([u8; 32]);

impl PolicyDigest {
    /// The digest of a fresh session: 32 zero bytes.
    pub fn new() -> Self {
        Self([0u8; 32])
    }

    /// A digest from its bytes (e.g. an object's `authPolicy`).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex of the digest.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// `TPM2_PolicyPCR`: `SHA-256(old || 0000017F || TPML_PCR_SELECTION ||
    /// pcr_digest(values))`, the selection marshalled as one SHA-256 bank.
    ///
    /// # Errors
    /// `PcrSelectionMismatch` when `values` does not hold exactly the selected PCRs.
    pub fn pcr(self, selection: &PcrSelection, values: &PcrValues) -> Result<Self, Error> {
        selection.check_values(values)?;
        Ok(Self(sha256(&[
            &self.0,
            &TPM_CC_POLICY_PCR.to_be_bytes(),
            &selection.marshal(),
            &pcr_digest(values),
        ])))
    }

    /// `TPM2_PolicyCommandCode`: `SHA-256(old || 0000016C || cc)`.
    pub fn command_code(self, cc: u32) -> Self {
        Self(sha256(&[
            &self.0,
            &TPM_CC_POLICY_COMMAND_CODE.to_be_bytes(),
            &cc.to_be_bytes(),
        ]))
    }

    /// `TPM2_PolicyAuthValue`: `SHA-256(old || 0000016B)`.
    pub fn auth_value(self) -> Self {
        Self(sha256(&[&self.0, &TPM_CC_POLICY_AUTH_VALUE.to_be_bytes()]))
    }
}

impl fmt::Debug for PolicyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyDigest({})", self.to_hex())
    }
}

impl fmt::Display for PolicyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl AsRef<[u8]> for PolicyDigest {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::{TPM_CC_NV_READ, TPM_CC_SIGN};

    fn sha256_hex(bytes: &[u8]) -> String {
        hex::encode(crate::tpm::hash(crate::tpm::TPM_ALG_SHA256, &[bytes]).unwrap())
    }

    #[test]
    fn policy_pcr_23_all_zero_known_vector() {
        // Built literally from NOTES-TPM: SHA256(0^32 || 0000017F || 00000001 000B 03 000080
        // || SHA256(0^32)); the constant is also what a swtpm trial session gives
        // (testdata/swtpm/policy_pcr23.bin).
        let mut bytes = vec![0u8; 32];
        bytes.extend_from_slice(&[0x00, 0x00, 0x01, 0x7f]);
        bytes.extend_from_slice(&[0x00, 0x00, 0x00, 0x01, 0x00, 0x0b, 0x03, 0x00, 0x00, 0x80]);
        bytes.extend_from_slice(
            &hex::decode("66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925")
                .unwrap(),
        );
        let literal = sha256_hex(&bytes);
        assert_eq!(
            literal,
            "3c87a4b3fb85ebeea58c5fb36ac22d3f280cec27a9f6dd0fa23be9ce560deec8"
        );

        let selection = PcrSelection::new([23]).unwrap();
        let values: PcrValues = [(23, [0u8; 32])].into_iter().collect();
        let digest = PolicyDigest::new().pcr(&selection, &values).unwrap();
        assert_eq!(digest.to_hex(), literal);
        assert_eq!(format!("{digest}"), literal);
        assert_eq!(format!("{digest:?}"), format!("PolicyDigest({literal})"));
    }

    #[test]
    fn policy_pcr_follows_the_formula_for_several_pcrs() {
        let selection = PcrSelection::new([0, 2, 4, 7, 9]).unwrap();
        let values: PcrValues = [0u8, 2, 4, 7, 9]
            .into_iter()
            .map(|i| (i, [i.wrapping_mul(17); 32]))
            .collect();
        let start = PolicyDigest::from_bytes([0xab; 32]);
        let mut concatenated = Vec::new();
        for i in [0u8, 2, 4, 7, 9] {
            concatenated.extend_from_slice(&[i.wrapping_mul(17); 32]);
        }
        let mut bytes = vec![0xab; 32];
        bytes.extend_from_slice(&hex::decode("0000017f00000001000b03950200").unwrap());
        bytes.extend_from_slice(&hex::decode(sha256_hex(&concatenated)).unwrap());
        assert_eq!(
            start.pcr(&selection, &values).unwrap().to_hex(),
            sha256_hex(&bytes)
        );
    }

    #[test]
    fn policy_pcr_refuses_values_that_differ_from_the_selection() {
        let selection = PcrSelection::new([0, 7]).unwrap();
        let values: PcrValues = [(0, [0u8; 32]), (8, [0u8; 32])].into_iter().collect();
        assert_eq!(
            PolicyDigest::new().pcr(&selection, &values),
            Err(Error::PcrSelectionMismatch {
                selected: vec![0, 7],
                values: vec![0, 8]
            })
        );
    }

    #[test]
    fn command_code_and_auth_value() {
        // SHA256(0^32 || 0000016B), as a swtpm trial session gives
        // (testdata/swtpm/policy_authvalue.bin).
        assert_eq!(
            PolicyDigest::new().auth_value().to_hex(),
            "8fcd2169ab92694e0c633f1ab772842b8241bbc20288981fc7ac1eddc1fddb0e"
        );
        let start = PolicyDigest::from_bytes([0x01; 32]);
        let mut bytes = vec![0x01; 32];
        bytes.extend_from_slice(&[0x00, 0x00, 0x01, 0x6c, 0x00, 0x00, 0x01, 0x5d]);
        assert_eq!(start.command_code(TPM_CC_SIGN).to_hex(), sha256_hex(&bytes));
        assert_ne!(
            start.command_code(TPM_CC_NV_READ),
            start.command_code(TPM_CC_SIGN)
        );
        assert_eq!(PolicyDigest::default(), PolicyDigest::new());
        assert_eq!(PolicyDigest::new().as_bytes(), &[0u8; 32]);
        assert_eq!(start.as_ref(), &[0x01; 32]);
    }

    #[test]
    fn statement_key_policy_chain() {
        // docs/protocol.md: PolicyPCR(platform set) then PolicyCommandCode(TPM2_Sign). With the
        // platform PCRs all zero this is what a swtpm trial session gives
        // (testdata/swtpm/policy_platform_sign.bin).
        let selection = PcrSelection::new([0, 2, 4, 7, 9]).unwrap();
        let values: PcrValues = selection
            .pcrs()
            .into_iter()
            .map(|i| (i, [0u8; 32]))
            .collect();
        let digest = PolicyDigest::new()
            .pcr(&selection, &values)
            .unwrap()
            .command_code(TPM_CC_SIGN);
        assert_eq!(
            digest.to_hex(),
            "92940c1c0e2b0615dc9ef05c9140dba8a64f013c03500c954dc0f7eefa3c7e7f"
        );
    }
}
