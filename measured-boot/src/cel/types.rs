//! Record and content types of the measurement log, their strict JSON encodings and the
//! digest rule.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::MAX_SAFE_INTEGER;
use crate::alg::sha256;
use crate::error::CelError;

fn lower_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(D::Error::custom("hex must be lowercase"));
    }
    hex::decode(&s).map_err(|e| D::Error::custom(format!("bad hex: {e}")))
}

/// A SHA-256 digest, encoded as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    /// `sha256(data)`.
    pub fn of(data: &[u8]) -> Self {
        Self(sha256(data))
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", hex::encode(self.0))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = lower_hex(d)?;
        <[u8; 32]>::try_from(v.as_slice()).map(Self).map_err(|_| {
            D::Error::custom(format!("a SHA-256 digest has 32 bytes, not {}", v.len()))
        })
    }
}

/// A function or instance id: 128 bits, encoded as 32 lowercase hex characters (docs/protocol.md,
/// encodings).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub [u8; 16]);

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", hex::encode(self.0))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = lower_hex(d)?;
        <[u8; 16]>::try_from(v.as_slice())
            .map(Self)
            .map_err(|_| D::Error::custom(format!("an id has 16 bytes, not {}", v.len())))
    }
}

/// Bytes encoded as lowercase hex (e.g. a TPM name: `nameAlg || digest`).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct HexBytes(pub Vec<u8>);

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexBytes({})", hex::encode(&self.0))
    }
}

impl Serialize for HexBytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for HexBytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        lower_hex(d).map(Self)
    }
}

/// Bytes encoded as base64 (RFC 4648 §4, padded, canonical).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Base64Bytes(pub Vec<u8>);

impl fmt::Debug for Base64Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64Bytes({})", STANDARD.encode(&self.0))
    }
}

impl Serialize for Base64Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let v = STANDARD
            .decode(&s)
            .map_err(|e| D::Error::custom(format!("bad base64: {e}")))?;
        if STANDARD.encode(&v) != s {
            return Err(D::Error::custom("base64 is not canonical"));
        }
        Ok(Self(v))
    }
}

/// `daemon_started`: the daemon came up. The first opens a log generation; every later
/// start of the daemon within the same TPM startup (a service restart, an upgrade, a crash)
/// appends another with the same generation, counts and boot id and its own version and
/// executable digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonStarted {
    /// The daemon's version.
    pub version: String,
    /// SHA-256 of the running daemon's executable file, as the daemon itself reports it:
    /// it proves something only where the platform state pins the image holding the daemon.
    pub executable_sha256: Sha256Digest,
    /// The log generation this record starts.
    pub generation: u64,
    /// The platform PCRs quoted and sealed to.
    pub platform_pcrs: Vec<u32>,
    /// The sealing NV index's `TPM2B_NV_PUBLIC`, as read back from the TPM.
    pub sealing_nv_public: Base64Bytes,
    /// The sealing NV index's TPM name.
    pub sealing_nv_name: HexBytes,
    /// The statement key's TPM name.
    pub statement_key_name: HexBytes,
    /// The TPM's `resetCount`, as the AK's quotes show it.
    pub reset_count: u32,
    /// The TPM's `restartCount`, as the AK's quotes show it.
    pub restart_count: u32,
    /// The kernel's boot id, for diagnosis.
    pub boot_id: String,
}

/// `function_loaded`: a function was registered; the record's digest is `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionLoaded {
    /// The function's id.
    pub function_id: Id,
    /// Its name.
    pub name: String,
    /// Its measurement: `sha256(source bytes exactly as uploaded)`.
    pub sha256: Sha256Digest,
}

/// `instance_created`: an instance and its input-encryption key were created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceCreated {
    /// The instance's id.
    pub instance_id: Id,
    /// `sha256(JCS(manifest))`.
    pub manifest_sha256: Sha256Digest,
    /// `sha256` of the SEC1 uncompressed public key.
    pub public_key_sha256: Sha256Digest,
}

/// `instance_destroyed`: an instance's secret became unrecoverable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceDestroyed {
    /// The instance's id.
    pub instance_id: Id,
    /// The sealing epoch retired by the destruction.
    pub epoch_retired: u64,
}

/// `epoch_reset`: an operator reset the sealing epoch, giving up unrecoverable instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EpochReset {
    /// The new epoch.
    pub epoch: u64,
    /// The instances given up.
    pub unrecoverable: Vec<Id>,
}

/// `tls_key_replaced`: the daemon generated a new TLS key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsKeyReplaced {
    /// `sha256` of the new certificate's SubjectPublicKeyInfo.
    pub tls_spki_sha256: Sha256Digest,
}

/// A record's `content`: the event type in `"event"` and its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventContent {
    /// See [`DaemonStarted`].
    DaemonStarted(DaemonStarted),
    /// See [`FunctionLoaded`].
    FunctionLoaded(FunctionLoaded),
    /// See [`InstanceCreated`].
    InstanceCreated(InstanceCreated),
    /// See [`InstanceDestroyed`].
    InstanceDestroyed(InstanceDestroyed),
    /// See [`EpochReset`].
    EpochReset(EpochReset),
    /// See [`TlsKeyReplaced`].
    TlsKeyReplaced(TlsKeyReplaced),
}

impl EventContent {
    /// The event type as it appears in `"event"`.
    pub fn event_name(&self) -> &'static str {
        match self {
            Self::DaemonStarted(_) => "daemon_started",
            Self::FunctionLoaded(_) => "function_loaded",
            Self::InstanceCreated(_) => "instance_created",
            Self::InstanceDestroyed(_) => "instance_destroyed",
            Self::EpochReset(_) => "epoch_reset",
            Self::TlsKeyReplaced(_) => "tls_key_replaced",
        }
    }

    /// RFC 8785 canonical JSON of the content.
    pub fn canonical_json(&self) -> Result<Vec<u8>, CelError> {
        self.check_integers()?;
        serde_jcs::to_vec(self).map_err(|e| CelError::Canonical {
            reason: e.to_string(),
        })
    }

    /// The digest extended for this content: the function's measurement as-is for
    /// `function_loaded`, `sha256(JCS(content))` for every other event.
    pub fn digest(&self) -> Result<Sha256Digest, CelError> {
        match self {
            Self::FunctionLoaded(f) => Ok(f.sha256),
            other => Ok(Sha256Digest::of(&other.canonical_json()?)),
        }
    }

    /// Refuse integers RFC 8785 cannot represent exactly.
    fn check_integers(&self) -> Result<(), CelError> {
        let (field, value) = match self {
            Self::DaemonStarted(d) => ("generation", d.generation),
            Self::InstanceDestroyed(d) => ("epoch_retired", d.epoch_retired),
            Self::EpochReset(e) => ("epoch", e.epoch),
            Self::FunctionLoaded(_) | Self::InstanceCreated(_) | Self::TlsKeyReplaced(_) => {
                return Ok(());
            }
        };
        safe_integer(field, value)
    }
}

fn safe_integer(field: &'static str, value: u64) -> Result<(), CelError> {
    if value > MAX_SAFE_INTEGER {
        Err(CelError::IntegerTooLarge { field, value })
    } else {
        Ok(())
    }
}

/// One measurement-log record. Fields are public so that a record can be held as read, even
/// when its digest is wrong; [`Record::new`] builds a correct one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "wire::Record", into = "wire::Record")]
pub struct Record {
    /// Position in its log generation, from 0.
    pub recnum: u64,
    /// The PCR extended.
    pub pcr: u32,
    /// The SHA-256 digest extended.
    pub digest: Sha256Digest,
    /// What was measured.
    pub content: EventContent,
}

impl Record {
    /// A record for `content`, with its digest computed by the digest rule.
    pub fn new(recnum: u64, pcr: u32, content: EventContent) -> Result<Self, CelError> {
        safe_integer("recnum", recnum)?;
        let digest = content.digest()?;
        Ok(Self {
            recnum,
            pcr,
            digest,
            content,
        })
    }

    /// Whether the digest is the one the content gives. For `function_loaded` this checks the
    /// digest equals `content.sha256`. Content that cannot be canonicalised does not match.
    pub fn digest_matches(&self) -> bool {
        self.content.digest().is_ok_and(|d| d == self.digest)
    }
}

/// The JSON shape of a record, exactly as docs/protocol.md gives it.
mod wire {
    use serde::{Deserialize, Serialize};

    use super::{EventContent, Sha256Digest, safe_integer};

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct Record {
        recnum: u64,
        pcr: u32,
        digests: Vec<Digest>,
        content_type: ContentType,
        content: EventContent,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Digest {
        #[serde(rename = "hashAlg")]
        hash_alg: HashAlg,
        digest: Sha256Digest,
    }

    #[derive(Serialize, Deserialize)]
    enum HashAlg {
        #[serde(rename = "sha256")]
        Sha256,
    }

    #[derive(Serialize, Deserialize)]
    enum ContentType {
        #[serde(rename = "arbiter")]
        Arbiter,
    }

    impl TryFrom<Record> for super::Record {
        type Error = String;

        fn try_from(r: Record) -> Result<Self, String> {
            let [
                Digest {
                    hash_alg: HashAlg::Sha256,
                    digest,
                },
            ] = r.digests[..]
            else {
                return Err(format!(
                    "digests must hold one sha256 digest, not {}",
                    r.digests.len()
                ));
            };
            safe_integer("recnum", r.recnum).map_err(|e| e.to_string())?;
            r.content.check_integers().map_err(|e| e.to_string())?;
            Ok(Self {
                recnum: r.recnum,
                pcr: r.pcr,
                digest,
                content: r.content,
            })
        }
    }

    impl From<super::Record> for Record {
        fn from(r: super::Record) -> Self {
            Self {
                recnum: r.recnum,
                pcr: r.pcr,
                digests: vec![Digest {
                    hash_alg: HashAlg::Sha256,
                    digest: r.digest,
                }],
                content_type: ContentType::Arbiter,
                content: r.content,
            }
        }
    }
}
