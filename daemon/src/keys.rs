//! Secrets at rest: the sealing key (read from the TPM's sealing index at start and held in
//! zeroized memory), the wrapping of instance secrets and the TLS key under it
//! (AES-256-GCM, AAD = owner and epoch, docs/protocol.md), and instance secrets themselves.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::tpm::SealedKey;

/// A failure to wrap or unwrap a secret. Never carries secret bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The wrapping belongs to another epoch of the sealing key: it was written before a
    /// rotation (or restored from an old copy) and cannot be opened any more.
    #[error(
        "the {owner} secret is wrapped under epoch {found}, the sealing key is at epoch {current}"
    )]
    WrongEpoch {
        /// Whose secret.
        owner: String,
        /// The wrapping's epoch.
        found: u64,
        /// The sealing key's epoch.
        current: u64,
    },
    /// The wrapping does not authenticate under the current key.
    #[error("the {owner} secret's wrapping does not open under the current sealing key")]
    Unwrap {
        /// Whose secret.
        owner: String,
    },
    /// The unwrapped secret has the wrong length.
    #[error("the {owner} secret has an unexpected length")]
    Length {
        /// Whose secret.
        owner: String,
    },
}

/// A secret wrapped under the sealing key of one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// The sealing key's epoch.
    pub epoch: u64,
    /// The AES-GCM nonce (12 bytes).
    pub nonce: Vec<u8>,
    /// The ciphertext with its tag.
    pub ciphertext: Vec<u8>,
}

/// The AAD of a wrapping: `"arbiter/v1/wrap" || 0x00 || owner || 0x00 || epoch (u64 BE)`.
fn aad(owner: &str, epoch: u64) -> Vec<u8> {
    let mut aad = b"arbiter/v1/wrap\0".to_vec();
    aad.extend_from_slice(owner.as_bytes());
    aad.push(0);
    aad.extend_from_slice(&epoch.to_be_bytes());
    aad
}

/// The sealing key in memory, and what it wraps.
pub struct Sealer {
    sealed: SealedKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("epoch", &self.sealed.epoch())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Holds the key read from the sealing index.
    pub fn new(sealed: SealedKey) -> Self {
        Self { sealed }
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.sealed.epoch()
    }

    /// The AES-256-GCM instance keyed with the sealing key. Its key schedule (and GHASH
    /// key) is wiped when it is dropped: the workspace enables `aes-gcm`'s `zeroize`
    /// feature, which makes `Aes256Gcm` `ZeroizeOnDrop` (see the test).
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.sealed.key().into())
    }

    /// Wraps `secret` for `owner` (an instance id, or `tls`) at the current epoch.
    pub fn wrap(&self, owner: &str, secret: &[u8]) -> Wrapped {
        let mut nonce = [0u8; 12];
        rand::fill(&mut nonce);
        let epoch = self.epoch();
        let ciphertext = self
            .cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: secret,
                    aad: &aad(owner, epoch),
                },
            )
            // AES-GCM encryption fails only for plaintexts beyond 64 GiB.
            .unwrap_or_default();
        Wrapped {
            epoch,
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    /// Unwraps `owner`'s secret; refuses another epoch's wrapping.
    pub fn unwrap(&self, owner: &str, wrapped: &Wrapped) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        if wrapped.epoch != self.epoch() {
            return Err(KeyError::WrongEpoch {
                owner: owner.into(),
                found: wrapped.epoch,
                current: self.epoch(),
            });
        }
        let nonce = Nonce::try_from(wrapped.nonce.as_slice()).map_err(|_| KeyError::Unwrap {
            owner: owner.into(),
        })?;
        self.cipher()
            .decrypt(
                &nonce,
                Payload {
                    msg: &wrapped.ciphertext,
                    aad: &aad(owner, wrapped.epoch),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| KeyError::Unwrap {
                owner: owner.into(),
            })
    }

    /// Unwraps a 32-byte instance secret.
    pub fn unwrap_instance(
        &self,
        instance_id: &str,
        wrapped: &Wrapped,
    ) -> Result<InstanceSecret, KeyError> {
        let bytes = self.unwrap(instance_id, wrapped)?;
        let secret: [u8; 32] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
            owner: instance_id.into(),
        })?;
        Ok(InstanceSecret(Zeroizing::new(secret)))
    }
}

/// An instance's 32-byte secret (docs/protocol.md): its HPKE key pair and its result-at-rest key
/// derive from it. Zeroized on drop.
pub struct InstanceSecret(Zeroizing<[u8; 32]>);

impl InstanceSecret {
    /// A fresh secret from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut s = Zeroizing::new([0u8; 32]);
        rand::fill(&mut s[..]);
        Self(s)
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for InstanceSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InstanceSecret(<redacted>)")
    }
}

/// Encrypts `plaintext` at rest under a 32-byte key (results under the instance's
/// result-at-rest key), binding `context` as AAD. Returns (nonce, ciphertext).
pub fn seal_at_rest(key: &[u8; 32], context: &[u8], plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut nonce = [0u8; 12];
    rand::fill(&mut nonce);
    let ct = Aes256Gcm::new(key.into())
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad: context,
            },
        )
        // AES-GCM encryption fails only for plaintexts beyond 64 GiB.
        .unwrap_or_default();
    (nonce.to_vec(), ct)
}

/// Decrypts what [`seal_at_rest`] produced; `None` if it does not authenticate.
pub fn open_at_rest(
    key: &[u8; 32],
    context: &[u8],
    nonce: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let nonce = Nonce::try_from(nonce).ok()?;
    Aes256Gcm::new(key.into())
        .decrypt(
            &nonce,
            Payload {
                msg: ciphertext,
                aad: context,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ciphers made from the sealing key and the result-at-rest keys wipe their key
    /// schedules on drop (this does not compile without `aes-gcm`'s `zeroize` feature).
    #[test]
    fn cipher_key_schedules_are_zeroized_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>(_: &T) {}
        let sealer = Sealer::new(SealedKey::generate(1));
        wiped_on_drop(&sealer.cipher());
        wiped_on_drop(&Aes256Gcm::new(&[7u8; 32].into()));
    }

    #[test]
    fn wrap_round_trips_and_binds_owner_and_epoch() {
        let sealer = Sealer::new(SealedKey::generate(3));
        let w = sealer.wrap("inst", b"secret");
        assert_eq!(w.epoch, 3);
        assert_eq!(&sealer.unwrap("inst", &w).unwrap()[..], b"secret");
        assert!(matches!(
            sealer.unwrap("other", &w),
            Err(KeyError::Unwrap { .. })
        ));
        let mut old = w.clone();
        old.epoch = 2;
        assert!(matches!(
            sealer.unwrap("inst", &old),
            Err(KeyError::WrongEpoch { .. })
        ));
        let other = Sealer::new(SealedKey::generate(3));
        assert!(other.unwrap("inst", &w).is_err());
        let mut bad = w;
        bad.ciphertext[0] ^= 1;
        assert!(sealer.unwrap("inst", &bad).is_err());
    }

    #[test]
    fn at_rest_round_trips() {
        let key = [9u8; 32];
        let (n, c) = seal_at_rest(&key, b"ctx", b"out");
        assert_eq!(&open_at_rest(&key, b"ctx", &n, &c).unwrap()[..], b"out");
        assert!(open_at_rest(&key, b"other", &n, &c).is_none());
    }
}
