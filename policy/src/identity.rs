//! Identities (docs/protocol.md, identities): a party, an operator or the daemon's TLS endpoint is
//! the SHA-256
//! of its certificate's SubjectPublicKeyInfo, so self-signed certificates work and nothing
//! depends on a CA.

use sha2::{Digest, Sha256};
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

use crate::Error;

/// The SHA-256 of the DER SubjectPublicKeyInfo of an X.509 certificate (DER).
pub fn spki_sha256(cert_der: &[u8]) -> Result<[u8; 32], Error> {
    let cert = Certificate::from_der(cert_der).map_err(|e| Error::InvalidCertificate {
        reason: e.to_string(),
    })?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| Error::InvalidCertificate {
            reason: format!("SubjectPublicKeyInfo: {e}"),
        })?;
    Ok(Sha256::digest(&spki).into())
}

/// The identity string of a certificate: lowercase hex of [`spki_sha256`].
pub fn identity_of(cert_der: &[u8]) -> Result<String, Error> {
    Ok(hex::encode(spki_sha256(cert_der)?))
}

/// Whether `s` is a well-formed identity (64 lowercase hex characters).
pub fn is_identity(s: &str) -> bool {
    s.parse::<arbiter_proto::IdentityId>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_not_panicked() {
        assert!(spki_sha256(b"not a certificate").is_err());
        assert!(spki_sha256(&[]).is_err());
    }

    #[test]
    fn identity_format() {
        assert!(is_identity(&"ab".repeat(32)));
        assert!(!is_identity(&"AB".repeat(32)));
        assert!(!is_identity("abc"));
    }
}
