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

    /// An X.509 certificate that does not parse.
    #[error("invalid certificate: {reason}")]
    InvalidCertificate {
        /// Why it was refused.
        reason: String,
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

    /// An endorsement key that is not what enrolment accepts: not the TCG template for its
    /// algorithm, or not the key its certificate holds. The reason names the field.
    #[error("{reason}")]
    Endorsement {
        /// What differs.
        reason: String,
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

    /// An HPKE ciphertext that does not open: tampered with, sealed to another key, or
    /// sealed for another instance, slot, round, function or submitter (its `info`
    /// differs), or an `enc` that is not a P-256 point.
    #[error("the input does not decrypt (tampered, or sealed for another key or context)")]
    Decrypt,

    /// HPKE sealing failed (the AEAD refused the plaintext, e.g. beyond its size limit).
    #[error("HPKE encryption failed")]
    Encrypt,

    /// A Merkle inclusion proof (quote binding, docs/protocol.md) that does not hold.
    #[error("Merkle inclusion: {0}")]
    Merkle(#[from] MerkleError),

    /// A JWS statement (docs/protocol.md) that is malformed or does not verify.
    #[error("JWS: {0}")]
    Jws(#[from] JwsError),

    /// A key's or NV index's `authPolicy` is not the policy the check computed from the
    /// appraised PCR values.
    #[error("{what} authPolicy {found} is not the expected {expected}")]
    AuthPolicyMismatch {
        /// Which object was checked.
        what: &'static str,
        /// The policy computed, hex.
        expected: String,
        /// The policy found, hex.
        found: String,
    },

    /// Two attestations of one AK that should come from the same TPM startup do not (the
    /// TPM was reset or restarted between them, or the clock went backwards).
    #[error(
        "not the same TPM startup: reset/restart counts {earlier_reset}/{earlier_restart} then {later_reset}/{later_restart}, clock {earlier_clock} then {later_clock}"
    )]
    StartupChanged {
        /// `resetCount` of the earlier attestation.
        earlier_reset: u32,
        /// `restartCount` of the earlier attestation.
        earlier_restart: u32,
        /// `clock` of the earlier attestation.
        earlier_clock: u64,
        /// `resetCount` of the later attestation.
        later_reset: u32,
        /// `restartCount` of the later attestation.
        later_restart: u32,
        /// `clock` of the later attestation.
        later_clock: u64,
    },

    /// An evidence bundle (attestation response) that does not parse.
    #[error("invalid evidence: {reason}")]
    Evidence {
        /// What was wrong.
        reason: String,
    },

    /// An appraisal policy (TOML) that does not parse or is inconsistent.
    #[error("invalid appraisal policy: {reason}")]
    AppraisalPolicy {
        /// What was wrong.
        reason: String,
    },
}

/// Why a Merkle inclusion proof was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// The leaf index is not below the tree size.
    #[error("leaf index {index} is not below the tree size {tree_size}")]
    IndexOutOfRange {
        /// The index.
        index: u64,
        /// The tree size.
        tree_size: u64,
    },
    /// The proof has the wrong number of hashes for its index and tree size.
    #[error("proof has {found} hashes, {expected} expected for this index and tree size")]
    ProofLength {
        /// The length the index and size call for.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// The proof does not lead from the leaf to the root.
    #[error("the proof does not lead to the root")]
    RootMismatch,
    /// A root or proof element that is not 32 bytes of lowercase hex.
    #[error("{0:?} is not a SHA-256 hash (64 hex characters)")]
    BadHash(String),
}

/// Why a JWS compact serialisation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// Not three dot-separated base64url parts.
    #[error("not a JWS compact serialisation (three base64url parts)")]
    Malformed,
    /// A part that is not base64url without padding, or a header or payload that is not
    /// a JSON object.
    #[error("{part} is not valid: {reason}")]
    BadPart {
        /// `header`, `payload` or `signature`.
        part: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A header other than exactly `{"alg":"ES256","typ":…,"kid":…}`.
    #[error("unexpected header: {0}")]
    BadHeader(String),
    /// The `typ` differs from the one expected.
    #[error("typ {found:?}, expected {expected:?}")]
    WrongType {
        /// The `typ` the verifier asked for.
        expected: String,
        /// The `typ` found.
        found: String,
    },
    /// The `kid` is not the name of the key the verifier holds.
    #[error("kid {found} is not the statement key's name {expected}")]
    WrongKid {
        /// The key's name, hex.
        expected: String,
        /// The `kid` found.
        found: String,
    },
    /// The payload's `type` does not match the header's `typ`.
    #[error("payload type {found:?} does not match typ {typ:?}")]
    PayloadTypeMismatch {
        /// The header's `typ`.
        typ: String,
        /// The payload's `type`.
        found: String,
    },
}
