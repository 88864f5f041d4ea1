//! The local trust store, a directory (`--state DIR`, default `~/.config/arbiter`):
//!
//! - `trust.json`: per server URL, the AK pinned at enrolment (its TPM name and public key,
//!   the EK it was bound to) and the TLS key of the latest trusted attestation;
//! - `instances/<server-hash>/<id>/receipts.json`: this party's input receipts, so that a
//!   result or certificate can be checked to list its own inputs;
//! - `instances/<server-hash>/<id>/destruction.json`: a verified destruction certificate
//!   with the attestation whose log holds its `instance_destroyed` record, so the check can
//!   be repeated after a TPM startup has begun a new log generation.
//!
//! Files are written to a temporary name and renamed, so a crash leaves the old or the new
//! version, never a torn one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ClientError;

/// What a party pinned for one server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerTrust {
    /// The AK's TPM name (hex), pinned by `arbiter enroll`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak_name: Option<String>,
    /// The AK's public key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ak_public_pem: Option<String>,
    /// The EK the AK was bound to by credential activation: `rsa2048` | `ecc_nist_p384`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_alg: Option<String>,
    /// SHA-256 of that EK's certificate (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_cert_sha256: Option<String>,
    /// The TLS SPKI SHA-256 (hex) of the latest trusted attestation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested_tls_spki: Option<String>,
}

/// One input receipt as the daemon returned it and the client checked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The slot.
    pub slot: String,
    /// The round it was submitted in.
    pub round: u64,
    /// `sha256(enc || ciphertext)`, hex, recomputed by the client.
    pub ciphertext_sha256: String,
    /// The submitter (this party's identity).
    pub submitter: String,
    /// When the daemon accepted it.
    pub accepted_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TrustFile {
    #[serde(default)]
    servers: BTreeMap<String, ServerTrust>,
}

/// The trust store in one directory.
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ClientError::file(parent, e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| ClientError::file(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| ClientError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ClientError::file(path, e))
}

/// Writes a new private file (a key) at `path`, created with mode 0600 from the start so
/// that no umask leaves a moment in which others can read it, and refusing to replace an
/// existing file (`O_CREAT | O_EXCL`). The parent directory is created if needed; a
/// failed write removes the half-written file.
///
/// # Errors
/// `File` naming the path: it exists, or it cannot be created or written.
pub fn write_new_private(path: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ClientError::file(parent, e))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| ClientError::file(path, e))?;
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    if let Err(e) = written {
        drop(f);
        let _ = std::fs::remove_file(path);
        return Err(ClientError::file(path, e));
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, ClientError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ClientError::file(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(ClientError::file(path, e)),
    }
}

fn to_pretty<T: Serialize>(v: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec_pretty(v).map_err(|e| ClientError::Protocol(e.to_string()))
}

impl TrustStore {
    /// The store in `dir` (created on first write).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn trust_path(&self) -> PathBuf {
        self.dir.join("trust.json")
    }

    /// What is pinned for `server` (empty when nothing is).
    pub fn server(&self, server: &str) -> Result<ServerTrust, ClientError> {
        let file: TrustFile = read_json(&self.trust_path())?;
        Ok(file.servers.get(server).cloned().unwrap_or_default())
    }

    /// Updates what is pinned for `server`.
    pub fn update_server(
        &self,
        server: &str,
        update: impl FnOnce(&mut ServerTrust),
    ) -> Result<(), ClientError> {
        let mut file: TrustFile = read_json(&self.trust_path())?;
        update(file.servers.entry(server.to_owned()).or_default());
        write_atomic(&self.trust_path(), &to_pretty(&file)?)
    }

    /// The directory of one instance of one server.
    pub fn instance_dir(&self, server: &str, instance: &str) -> PathBuf {
        let tag = &crate::sha256_hex(server.as_bytes())[..16];
        self.dir.join("instances").join(tag).join(instance)
    }

    /// This party's receipts for an instance.
    pub fn receipts(&self, server: &str, instance: &str) -> Result<Vec<Receipt>, ClientError> {
        read_json(&self.instance_dir(server, instance).join("receipts.json"))
    }

    /// Adds a receipt.
    pub fn add_receipt(
        &self,
        server: &str,
        instance: &str,
        receipt: Receipt,
    ) -> Result<(), ClientError> {
        let path = self.instance_dir(server, instance).join("receipts.json");
        let mut all: Vec<Receipt> = read_json(&path)?;
        all.push(receipt);
        write_atomic(&path, &to_pretty(&all)?)
    }

    /// Saves a JSON document under an instance's directory.
    pub fn save(
        &self,
        server: &str,
        instance: &str,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<(), ClientError> {
        let path = self.instance_dir(server, instance).join(name);
        write_atomic(&path, &to_pretty(value)?)
    }

    /// Loads a JSON document saved under an instance's directory, if there is one.
    pub fn load(
        &self,
        server: &str,
        instance: &str,
        name: &str,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        let path = self.instance_dir(server, instance).join(name);
        let v: serde_json::Value = read_json(&path)?;
        Ok((!v.is_null()).then_some(v))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pins_and_receipts_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let t = TrustStore::new(dir.path());
        assert_eq!(t.server("https://a:1").unwrap(), ServerTrust::default());
        t.update_server("https://a:1", |s| s.ak_name = Some("000b".into()))
            .unwrap();
        assert_eq!(
            t.server("https://a:1").unwrap().ak_name.as_deref(),
            Some("000b")
        );
        assert!(t.server("https://b:1").unwrap().ak_name.is_none());
        let r = Receipt {
            slot: "a".into(),
            round: 1,
            ciphertext_sha256: "00".into(),
            submitter: "me".into(),
            accepted_at: "now".into(),
        };
        t.add_receipt("https://a:1", "id", r.clone()).unwrap();
        assert_eq!(t.receipts("https://a:1", "id").unwrap(), vec![r]);
        assert!(t.receipts("https://b:1", "id").unwrap().is_empty());
    }

    #[test]
    fn private_files_are_created_0600_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("sub/key.pem");
        write_new_private(&key, b"secret").unwrap();
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let e = write_new_private(&key, b"other").unwrap_err();
        assert!(e.to_string().contains("key.pem"), "{e}");
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");
    }
}
