//! What identifies this daemon to Keylime and is kept in the state directory
//! (`<state_dir>/keylime/`): the agent UUID (configured, or derived once from the
//! attestation key's name) and the agent listener's self-signed TLS certificate and key,
//! which the registrar records as `mtls_cert` and whose public key is the `pubkey` bound
//! into PCR 16.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::tls::TlsIdentity;

/// The sub-directory of the state directory holding the Keylime files.
pub const DIR: &str = "keylime";
const UUID_FILE: &str = "uuid";
const CERT_FILE: &str = "agent-cert.pem";
const KEY_FILE: &str = "agent-key.pem";

/// Whether `id` is an agent id Keylime accepts as a path segment: 1 to 80 ASCII letters,
/// digits and `-`.
pub fn is_agent_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 80 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The UUID derived from the attestation key's TPM name: the first 16 bytes of
/// SHA-256("arbiter keylime agent" || name), formatted as a version-4 UUID (the version
/// and variant bits set as RFC 9562 says; the rest is the hash).
pub fn derived_uuid(ak_name: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"arbiter keylime agent");
    h.update(ak_name);
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The Keylime directory of a state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join(DIR)
}

fn create_dir(state_dir: &Path) -> Result<PathBuf, String> {
    let d = dir(state_dir);
    std::fs::create_dir_all(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
    Ok(d)
}

/// The agent UUID: the configured one, else the one kept from an earlier start, else the
/// derived one (then kept). A configured UUID differing from a kept one replaces it.
pub fn agent_uuid(
    state_dir: &Path,
    configured: Option<&str>,
    ak_name: &[u8],
) -> Result<String, String> {
    let d = create_dir(state_dir)?;
    let path = d.join(UUID_FILE);
    let kept = match std::fs::read_to_string(&path) {
        Ok(s) => Some(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let uuid = match (configured, &kept) {
        (Some(c), _) => c.to_owned(),
        (None, Some(k)) if is_agent_id(k) => k.clone(),
        (None, Some(k)) => {
            return Err(format!(
                "{} holds `{k}`, not an agent id; remove it to derive one again",
                path.display()
            ));
        }
        (None, None) => derived_uuid(ak_name),
    };
    if kept.as_deref() != Some(uuid.as_str()) {
        write_private(&path, uuid.as_bytes())?;
    }
    Ok(uuid)
}

/// Writes a file readable by the daemon's user only, replacing it atomically.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The agent listener's TLS identity: loaded from the state directory, or generated (a
/// self-signed ECDSA P-256 certificate with key identifiers, as Python 3.13's strict
/// verification wants of a trust anchor) and kept there. Kept in a plain file (mode 0600),
/// not wrapped by the sealing key: the agent interface must keep answering in a degraded
/// start, when the sealing key is unavailable — that is when the verifier must see the
/// platform.
pub fn agent_tls(state_dir: &Path) -> Result<TlsIdentity, String> {
    let d = create_dir(state_dir)?;
    let (cert, key) = (d.join(CERT_FILE), d.join(KEY_FILE));
    if cert.is_file() && key.is_file() {
        return TlsIdentity::from_pem_files(&cert, &key).map_err(|e| e.to_string());
    }
    let key_pair =
        rcgen::KeyPair::generate().map_err(|e| format!("generating the agent key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .map_err(|e| format!("agent certificate: {e}"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "arbiterd keylime agent");
    params.is_ca = rcgen::IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.not_before = rcgen::date_time_ymd(2025, 1, 1);
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    for ip in ["127.0.0.1", "::1"] {
        if let Ok(ip) = ip.parse() {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        }
    }
    let certified = params
        .self_signed(&key_pair)
        .map_err(|e| format!("agent certificate: {e}"))?;
    let key_pem = Zeroizing::new(key_pair.serialize_pem());
    write_private(&key, key_pem.as_bytes())?;
    write_private(&cert, certified.pem().as_bytes())?;
    TlsIdentity::from_pem_files(&cert, &key).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uuid_is_a_v4_uuid_and_stable() {
        let a = derived_uuid(b"\x00\x0bname");
        assert_eq!(a, derived_uuid(b"\x00\x0bname"));
        assert_ne!(a, derived_uuid(b"\x00\x0bother"));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert!(is_agent_id(&a));
    }

    #[test]
    fn agent_ids() {
        assert!(is_agent_id("d432fbb3-d2f1-4a97-9ef7-75bd81c00000"));
        assert!(!is_agent_id(""));
        assert!(!is_agent_id("a/b"));
        assert!(!is_agent_id(&"a".repeat(81)));
    }
}
