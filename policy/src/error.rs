//! The crate's one error type: every way a TPM structure can fail to parse and every way
//! a piece of evidence can fail a check, named precisely enough that a verifier can tell
//! a party what was wrong.

/// Everything that can go wrong when parsing TPM structures or checking evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ended before the named structure or field was complete.
    #[error("truncated {what}")]
    Truncated {
        /// The structure or field being read.
        what: &'static str,
    },

    /// Bytes were left over after the named structure.
    #[error("trailing bytes after {what}")]
    TrailingBytes {
        /// The structure that should have ended the input.
        what: &'static str,
    },

    /// A `TPMS_ATTEST` did not start with `TPM_GENERATED_VALUE` (`ff544347`): the TPM did
    /// not produce it.
    #[error("bad TPMS_ATTEST magic {found:#010x} (expected 0xff544347)")]
    BadMagic {
        /// The magic value found.
        found: u32,
    },

    /// An attestation of a different type than the check expects (e.g. a certification
    /// offered as a quote).
    #[error("wrong attestation type {found:#06x} (expected {expected:#06x})")]
    WrongAttestType {
        /// The `TPM_ST_ATTEST_*` type the check needs.
        expected: u16,
        /// The type found.
        found: u16,
    },

    /// A `TPMS_ATTEST` of a type this crate does not parse (e.g. `TPM_ST_ATTEST_TIME`).
    #[error("unsupported attestation type {0:#06x}")]
    UnsupportedAttestType(u16),

    /// An algorithm, scheme or curve this crate does not handle, or that the check does
    /// not allow here.
    #[error("unsupported {what}: {alg:#06x}")]
    UnsupportedAlgorithm {
        /// Which field carried the algorithm.
        what: &'static str,
        /// The `TPM_ALG_ID` or `TPM_ECC_CURVE` value found.
        alg: u16,
    },

    /// A field holds a value its structure does not allow.
    #[error("invalid {what}: {value}")]
    InvalidValue {
        /// The field.
        what: &'static str,
        /// The value found (a length for sized fields).
        value: u64,
    },

    /// A sized field is longer than its structure allows.
    #[error("{what} is {len} bytes long, at most {max} allowed")]
    TooLong {
        /// The field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The largest allowed length.
        max: usize,
    },

    /// A PCR index outside the 24 PCRs (0..=23) of the SHA-256 bank.
    #[error("invalid PCR index {0} (PCRs are 0..=23)")]
    InvalidPcr(u16),

    /// A PCR selection names a different bank count than the one SHA-256 bank expected.
    #[error("PCR selection lists {found} banks, expected exactly one (SHA-256)")]
    PcrBankCount {
        /// Number of `TPMS_PCR_SELECTION` entries found.
        found: u32,
    },

    /// The PCRs selected (by a quote or a policy) differ from the PCRs whose values were
    /// supplied.
    #[error("PCR selection {selected:?} differs from the PCR values supplied for {values:?}")]
    PcrSelectionMismatch {
        /// PCR indices in the selection, ascending.
        selected: Vec<u8>,
        /// PCR indices of the supplied values, ascending.
        values: Vec<u8>,
    },

    /// The quote's PCR digest is not the digest of the supplied PCR values.
    #[error("quoted PCR digest does not match the supplied PCR values")]
    PcrDigestMismatch,

    /// The attestation's `extraData` is not the qualifying data (nonce) the verifier
    /// expects.
    #[error("attestation extraData does not match the expected qualifying data")]
    QualifyingDataMismatch,

    /// A certified object's or NV index's name differs from the name in the attestation.
    #[error("attested name does not match the name of the expected object")]
    NameMismatch,

    /// The signature does not verify under the key.
    #[error("signature does not verify")]
    BadSignature,

    /// A public key that is not a valid key of its kind (e.g. an ECC point not on the
    /// curve, or an empty unique field).
    #[error("invalid public key: {reason}")]
    InvalidKey {
        /// What was wrong.
        reason: &'static str,
    },

    /// A key's or index's attributes lack bits the check requires, or carry bits it
    /// forbids.
    #[error(
        "{what} attributes {found:#010x}: missing required {missing:#010x}, forbidden present {forbidden:#010x}"
    )]
    AttributeMismatch {
        /// Which object was checked.
        what: &'static str,
        /// The attributes found.
        found: u32,
        /// Required bits that are clear.
        missing: u32,
        /// Forbidden bits that are set.
        forbidden: u32,
    },
}
