//! Input encryption (docs/protocol.md): HPKE (RFC 9180) in mode_base with DHKEM(P-256,
//! HKDF-SHA256), HKDF-SHA256 and AES-256-GCM, `aad` empty, and an `info` that binds each
//! ciphertext to its instance, slot, round, function and submitter — so nobody can
//! replay another party's ciphertext as their own, into another slot or round, or for
//! another function. The daemon derives the instance key pair and opens; parties seal.
//!
//! Also here: the instance's result-at-rest key, `ciphertext_sha256` (docs/protocol.md, encodings)
//! and the JSON whitespace padding the CLI applies before sealing.

use std::fmt;

use hkdf::Hkdf;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::DhP256HkdfSha256;
use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};
use serde_json::json;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Error;
use crate::tpm::hash::sha256;

type Kem = DhP256HkdfSha256;

/// The HPKE suite, as RFC 9180 names it.
pub const SUITE: &str = "DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM";
/// RFC 9180 KEM id of DHKEM(P-256, HKDF-SHA256).
pub const KEM_ID: u16 = 0x0010;
/// RFC 9180 KDF id of HKDF-SHA256.
pub const KDF_ID: u16 = 0x0001;
/// RFC 9180 AEAD id of AES-256-GCM.
pub const AEAD_ID: u16 = 0x0002;
/// The prefix of every input's `info`.
pub const INFO_LABEL: &[u8] = b"arbiter/v1/input";
/// Length of an `info`: label, a zero byte, a SHA-256 digest.
pub const INFO_LEN: usize = INFO_LABEL.len() + 1 + 32;
/// Length of an encapsulated key (`enc`) and of a public key: an uncompressed P-256
/// point.
pub const ENC_LEN: usize = 65;
/// HKDF `info` of the result-at-rest key.
pub const RESULT_AT_REST_INFO: &[u8] = b"arbiter/v1/result-at-rest";
/// The CLI's default padding block for plaintexts.
pub const DEFAULT_PAD_BLOCK: usize = 256;

/// What an input ciphertext is bound to (docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputContext<'a> {
    /// The instance id (32 lowercase hex).
    pub instance_id: &'a str,
    /// The slot name.
    pub slot: &'a str,
    /// The round the input is submitted in (from 1).
    pub round: u64,
    /// The function's measurement (64 lowercase hex).
    pub function_sha256: &'a str,
    /// The submitter's identity (64 lowercase hex).
    pub submitter: &'a str,
}

/// `info = "arbiter/v1/input" || 0x00 || SHA-256(JCS({"instance_id", "slot", "round",
/// "function_sha256", "submitter"}))`, 49 bytes.
pub fn input_info(ctx: &InputContext) -> Vec<u8> {
    let bound = json!({
        "instance_id": ctx.instance_id,
        "slot": ctx.slot,
        "round": ctx.round,
        "function_sha256": ctx.function_sha256,
        "submitter": ctx.submitter,
    });
    let mut info = Vec::with_capacity(INFO_LEN);
    info.extend_from_slice(INFO_LABEL);
    info.push(0);
    info.extend_from_slice(&sha256(&[&crate::jcs::to_vec(&bound)]));
    info
}

/// An instance's HPKE private key. The scalar is zeroized when this is dropped; it is
/// never printed.
#[derive(Clone)]
pub struct PrivateKey(<Kem as hpke::Kem>::PrivateKey);

impl PrivateKey {
    /// The SEC1 uncompressed public key (65 bytes) of this private key.
    pub fn public_key(&self) -> [u8; ENC_LEN] {
        let mut out = [0u8; ENC_LEN];
        let bytes = Kem::sk_to_pk(&self.0).to_bytes();
        if bytes.len() == ENC_LEN {
            out.copy_from_slice(&bytes);
        }
        out
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

/// RFC 9180 `DeriveKeyPair(ikm = instance_secret)` for DHKEM(P-256, HKDF-SHA256): the
/// instance's private key and its SEC1 uncompressed public key (65 bytes).
pub fn derive_keypair(instance_secret: &[u8; 32]) -> (PrivateKey, [u8; ENC_LEN]) {
    let (sk, _) = Kem::derive_keypair(instance_secret);
    let sk = PrivateKey(sk);
    let pk = sk.public_key();
    (sk, pk)
}

/// Seals `plaintext` to the instance public key (SEC1 uncompressed, 65 bytes) with the
/// `info` of `ctx`: returns `(enc, ciphertext)`.
///
/// # Errors
/// `InvalidKey` when `public_key_sec1` is not a P-256 point; `Encrypt` when HPKE fails.
///
/// # Panics
/// Only if the operating system's random number generator fails (the `hpke` crate
/// draws the ephemeral key from it and treats that as fatal).
pub fn seal(
    public_key_sec1: &[u8],
    ctx: &InputContext,
    plaintext: &[u8],
) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(public_key_sec1).map_err(|_| {
        Error::InvalidKey {
            reason: "HPKE public key is not an uncompressed P-256 point",
        }
    })?;
    let (enc, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        &input_info(ctx),
        plaintext,
        b"",
    )
    .map_err(|_| Error::Encrypt)?;
    Ok((enc.to_bytes().to_vec(), ct))
}

/// Opens an input sealed with [`seal`] (or any RFC 9180 implementation of the suite)
/// under the `info` of `ctx`.
///
/// # Errors
/// `Decrypt` for every failure: an `enc` that is not a P-256 point, a ciphertext that
/// was tampered with, or one sealed for another instance, slot, round, function or
/// submitter.
pub fn open(
    private: &PrivateKey,
    ctx: &InputContext,
    enc: &[u8],
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc).map_err(|_| Error::Decrypt)?;
    hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
        &OpModeR::Base,
        &private.0,
        &enc,
        &input_info(ctx),
        ciphertext,
        b"",
    )
    .map(Zeroizing::new)
    .map_err(|_| Error::Decrypt)
}

/// `sha256(enc || ciphertext)` (docs/protocol.md, encodings), as receipts, results and certificates
/// show it.
pub fn ciphertext_sha256(enc: &[u8], ciphertext: &[u8]) -> [u8; 32] {
    sha256(&[enc, ciphertext])
}

/// Pads JSON text with ASCII spaces to a multiple of `block` bytes (unchanged when it
/// already is one, or when `block` is 0). Trailing whitespace keeps it valid JSON.
pub fn pad_json(plaintext_json: &[u8], block: usize) -> Vec<u8> {
    let mut out = plaintext_json.to_vec();
    if block > 0 {
        let rem = out.len() % block;
        if rem != 0 {
            out.resize(out.len() + (block - rem), b' ');
        }
    }
    out
}

/// The key that encrypts an instance's results at rest: HKDF-SHA256 with an empty salt,
/// `ikm = instance_secret`, `info = "arbiter/v1/result-at-rest"`, 32 bytes.
pub fn result_at_rest_key(instance_secret: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let mut okm = Zeroizing::new([0u8; 32]);
    let hk = Hkdf::<Sha256>::new(None, instance_secret);
    #[allow(clippy::expect_used)]
    // HKDF-Expand fails only for outputs over 255 × 32 bytes; this is 32.
    hk.expand(RESULT_AT_REST_INFO, okm.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm
}

#[cfg(test)]
mod tests;
