//! Evidence checks: an ECDSA `TPMT_SIGNATURE` over a `TPMS_ATTEST`, and the checks a
//! verifier makes of a quote (nonce, PCR selection, PCR digest), of a certification
//! (`TPM2_Certify`: the certified key's name) and of an NV certification.
//!
//! The attestation key must be a restricted signing key: only such a key guarantees that
//! a structure starting with `TPM_GENERATED_VALUE` was produced by the TPM itself rather
//! than handed to it for signing.

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;

use crate::Error;
use crate::tpm::hash::sha256;
use crate::tpm::{
    Attest, Attested, EcdsaSignature, NvPublic, ObjectAttributes, PcrValues, Public,
    TPM_ALG_SHA256, TPM_ST_ATTEST_CERTIFY, TPM_ST_ATTEST_NV, TPM_ST_ATTEST_NV_DIGEST,
    TPM_ST_ATTEST_QUOTE, pcr_digest,
};

/// Checks that `signature` (a marshalled `TPMT_SIGNATURE`, ECDSA with SHA-256) is `key`'s
/// signature over `SHA-256(attest)`. `key` must be an ECC NIST P-256 key.
///
/// # Errors
/// `UnsupportedAlgorithm` for a signature that is not ECDSA, a hash other than SHA-256,
/// or a key that is not P-256; parse errors of the signature; `BadSignature`.
pub fn verify_signature(attest: &[u8], signature: &[u8], key: &Public) -> Result<(), Error> {
    let sig = EcdsaSignature::parse(signature)?;
    if sig.hash_alg != TPM_ALG_SHA256 {
        return Err(Error::UnsupportedAlgorithm {
            what: "signature hash",
            alg: sig.hash_alg,
        });
    }
    let verifying_key = key.p256_verifying_key()?;
    let memo = VERIFIED.get().map(|memo| {
        let point = verifying_key.to_sec1_point(false);
        let len = (attest.len() as u64).to_be_bytes();
        (memo, sha256(&[point.as_bytes(), &len, attest, signature]))
    });
    if let Some((memo, digest)) = &memo
        && memo.contains(digest)
    {
        return Ok(());
    }
    let sig = sig.to_p256()?;
    verifying_key
        .verify_prehash(&sha256(&[attest]), &sig)
        .map_err(|_| Error::BadSignature)?;
    if let Some((memo, digest)) = memo {
        memo.insert(digest);
    }
    Ok(())
}

/// Signatures that verified, when [`remember_verified_signatures`] turned the memo on.
static VERIFIED: std::sync::OnceLock<VerifiedMemo> = std::sync::OnceLock::new();

/// A bounded set of SHA-256 digests of `(public key, attest, signature)` that verified.
struct VerifiedMemo {
    set: std::sync::Mutex<std::collections::HashSet<[u8; 32]>>,
    capacity: usize,
}

impl VerifiedMemo {
    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(digest)
    }

    fn insert(&self, digest: [u8; 32]) {
        let mut set = self.set.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= self.capacity {
            set.clear();
        }
        set.insert(digest);
    }
}

/// Turns on, for the rest of the process, a memo of the signatures [`verify_signature`]
/// found valid (at most `capacity`, forgotten all at once when full): a signature over the
/// very same bytes by the very same key is then accepted without the elliptic-curve
/// arithmetic. ECDSA verification is a deterministic function of the public key, the
/// message and the signature, so the answer for byte-identical inputs cannot differ; only
/// successes are remembered (a bad signature is checked, and refused, every time), and
/// every other check of the evidence still runs. Off unless called: the load tool turns it
/// on, because hundreds of verifiers check the same batch's quote on the same two cores
/// (docs/performance.md); a verifier of one answer gains nothing from it.
pub fn remember_verified_signatures(capacity: usize) {
    let _ = VERIFIED.set(VerifiedMemo {
        set: std::sync::Mutex::new(std::collections::HashSet::new()),
        capacity: capacity.max(1),
    });
}

/// Requires `ak` to be a restricted signing key (`restricted`, `sign`, not `decrypt`),
/// then checks its signature over `attest`, parses it and checks its type and
/// `extraData`.
fn verify_attestation(
    attest: &[u8],
    signature: &[u8],
    ak: &Public,
    qualifying_data: &[u8],
    expected_types: &[u16],
) -> Result<Attest, Error> {
    ak.require_attributes(
        "attestation key",
        ObjectAttributes::RESTRICTED | ObjectAttributes::SIGN_ENCRYPT,
        ObjectAttributes::DECRYPT,
    )?;
    verify_signature(attest, signature, ak)?;
    let parsed = Attest::parse(attest)?;
    if !expected_types.contains(&parsed.attest_type) {
        return Err(Error::WrongAttestType {
            expected: expected_types.first().copied().unwrap_or_default(),
            found: parsed.attest_type,
        });
    }
    if parsed.extra_data != qualifying_data {
        return Err(Error::QualifyingDataMismatch);
    }
    Ok(parsed)
}

/// Verifies a `TPM2_Quote`: `ak` is a restricted P-256 signing key whose SHA-256 ECDSA
/// `signature` covers `attest`; `attest` is a quote whose `extraData` equals
/// `qualifying_data`, which selects exactly one bank, SHA-256, with exactly the PCRs of
/// `pcrs`, and whose PCR digest equals [`pcr_digest`]`(pcrs)`. Returns the parsed
/// attestation (the caller reads `clock_info`).
///
/// # Errors
/// `AttributeMismatch` (the AK), the errors of [`verify_signature`] and
/// [`Attest::parse`], `WrongAttestType`, `QualifyingDataMismatch`, `PcrBankCount`,
/// `UnsupportedAlgorithm` (a bank other than SHA-256), `InvalidPcr`,
/// `PcrSelectionMismatch`, `PcrDigestMismatch`.
pub fn verify_quote(
    attest: &[u8],
    signature: &[u8],
    ak: &Public,
    qualifying_data: &[u8],
    pcrs: &PcrValues,
) -> Result<Attest, Error> {
    let parsed = verify_attestation(
        attest,
        signature,
        ak,
        qualifying_data,
        &[TPM_ST_ATTEST_QUOTE],
    )?;
    let selected = parsed.quoted_pcrs()?;
    selected.check_values(pcrs)?;
    let Attested::Quote {
        pcr_digest: quoted, ..
    } = &parsed.attested
    else {
        // `quoted_pcrs` succeeded, so this is a quote.
        return Err(Error::WrongAttestType {
            expected: TPM_ST_ATTEST_QUOTE,
            found: parsed.attest_type,
        });
    };
    if quoted.as_slice() != pcr_digest(pcrs).as_slice() {
        return Err(Error::PcrDigestMismatch);
    }
    Ok(parsed)
}

/// Verifies a `TPM2_Certify` of `certified` by `ak`: the signature as in
/// [`verify_quote`], type `TPM_ST_ATTEST_CERTIFY`, `extraData` equal to
/// `qualifying_data`, and the certified name equal to `certified.name()`. The qualified
/// name is not checked (it depends on the key's hierarchy). Returns the parsed
/// attestation.
///
/// # Errors
/// `AttributeMismatch` (the AK), the errors of [`verify_signature`] and
/// [`Attest::parse`], `WrongAttestType`, `QualifyingDataMismatch`, `NameMismatch`.
pub fn verify_certify(
    attest: &[u8],
    signature: &[u8],
    ak: &Public,
    certified: &Public,
    qualifying_data: &[u8],
) -> Result<Attest, Error> {
    let parsed = verify_attestation(
        attest,
        signature,
        ak,
        qualifying_data,
        &[TPM_ST_ATTEST_CERTIFY],
    )?;
    match &parsed.attested {
        Attested::Certify { name, .. } if *name == certified.name() => Ok(parsed),
        _ => Err(Error::NameMismatch),
    }
}

/// Verifies a `TPM2_NV_Certify` of the index `nv` by `ak`: the signature as in
/// [`verify_quote`], type `TPM_ST_ATTEST_NV` or `TPM_ST_ATTEST_NV_DIGEST`, `extraData`
/// equal to `qualifying_data`, and the index name equal to `nv.name()`. Returns the
/// parsed attestation; the caller checks the certified contents or digest.
///
/// # Errors
/// `AttributeMismatch` (the AK), the errors of [`verify_signature`] and
/// [`Attest::parse`], `WrongAttestType`, `QualifyingDataMismatch`, `NameMismatch`.
pub fn verify_nv_certify(
    attest: &[u8],
    signature: &[u8],
    ak: &Public,
    nv: &NvPublic,
    qualifying_data: &[u8],
) -> Result<Attest, Error> {
    let parsed = verify_attestation(
        attest,
        signature,
        ak,
        qualifying_data,
        &[TPM_ST_ATTEST_NV, TPM_ST_ATTEST_NV_DIGEST],
    )?;
    match &parsed.attested {
        Attested::Nv { index_name, .. } | Attested::NvDigest { index_name, .. }
            if *index_name == nv.name() =>
        {
            Ok(parsed)
        }
        _ => Err(Error::NameMismatch),
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Signer as _;
    use p256::ecdsa::{Signature, SigningKey};

    use super::*;
    use crate::tpm::{NvAttributes, PcrSelection, TPM_ALG_SHA384};

    const NONCE: &[u8] = b"nonce-0123456789";

    fn ak_key() -> SigningKey {
        SigningKey::from_slice(&[0x5a; 32]).unwrap()
    }

    fn ak_attributes() -> ObjectAttributes {
        ObjectAttributes::FIXED_TPM
            | ObjectAttributes::FIXED_PARENT
            | ObjectAttributes::SENSITIVE_DATA_ORIGIN
            | ObjectAttributes::USER_WITH_AUTH
            | ObjectAttributes::RESTRICTED
            | ObjectAttributes::SIGN_ENCRYPT
    }

    fn ak_public() -> Public {
        Public::p256_signing_key(ak_key().verifying_key(), ak_attributes(), &[]).unwrap()
    }

    fn pcr_values() -> PcrValues {
        [(0u8, [0x00; 32]), (7, [0x07; 32]), (23, [0x23; 32])]
            .into_iter()
            .collect()
    }

    /// The header of a TPMS_ATTEST, written out: magic, type, qualifiedSigner,
    /// extraData, clockInfo, firmwareVersion.
    fn header(attest_type: [u8; 2], nonce: &[u8]) -> Vec<u8> {
        let mut a = vec![0xff, 0x54, 0x43, 0x47];
        a.extend_from_slice(&attest_type);
        a.extend_from_slice(&[0x00, 0x02, 0x00, 0x0b]); // qualifiedSigner (a stub)
        a.extend_from_slice(&[0x00, nonce.len() as u8]);
        a.extend_from_slice(nonce);
        a.extend_from_slice(&[0, 0, 0, 0, 0, 0x01, 0x00, 0x00]); // clock
        a.extend_from_slice(&[0, 0, 0, 3]); // resetCount
        a.extend_from_slice(&[0, 0, 0, 4]); // restartCount
        a.push(1); // safe
        a.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]); // firmwareVersion
        a
    }

    /// A quote of `bank` / `bitmap` with the digest of `values`, written out.
    fn quote_bytes(nonce: &[u8], bitmap: [u8; 3], values: &PcrValues) -> Vec<u8> {
        let mut a = header([0x80, 0x18], nonce);
        a.extend_from_slice(&[0, 0, 0, 1, 0x00, 0x0b, 0x03]);
        a.extend_from_slice(&bitmap);
        a.extend_from_slice(&[0x00, 0x20]);
        let concatenated: Vec<u8> = values.values().flatten().copied().collect();
        a.extend_from_slice(&sha256(&[&concatenated]));
        a
    }

    fn good_quote() -> Vec<u8> {
        // PCRs 0, 7, 23: bitmap 81 00 80.
        quote_bytes(NONCE, [0x81, 0x00, 0x80], &pcr_values())
    }

    /// The TPMT_SIGNATURE of `key` over SHA-256(`attest`), written out.
    fn sign(key: &SigningKey, attest: &[u8]) -> Vec<u8> {
        let sig: Signature = key.sign(attest);
        let (r, s) = sig.split_bytes();
        let mut t = vec![0x00, 0x18, 0x00, 0x0b, 0x00, 0x20];
        t.extend_from_slice(&r);
        t.extend_from_slice(&[0x00, 0x20]);
        t.extend_from_slice(&s);
        t
    }

    fn check(attest: &[u8]) -> Result<Attest, Error> {
        verify_quote(
            attest,
            &sign(&ak_key(), attest),
            &ak_public(),
            NONCE,
            &pcr_values(),
        )
    }

    #[test]
    fn accepts_a_good_quote_and_returns_its_clock() {
        let attest = good_quote();
        let parsed = check(&attest).unwrap();
        assert_eq!(parsed.clock_info.reset_count, 3);
        assert_eq!(parsed.clock_info.restart_count, 4);
        assert_eq!(parsed.clock_info.clock, 0x0001_0000);
        assert_eq!(parsed.extra_data, NONCE);
        assert_eq!(
            parsed.quoted_pcrs().unwrap(),
            PcrSelection::new([0, 7, 23]).unwrap()
        );
        verify_signature(&attest, &sign(&ak_key(), &attest), &ak_public()).unwrap();
    }

    #[test]
    fn refuses_a_forged_signature() {
        let attest = good_quote();
        let other = SigningKey::from_slice(&[0x6b; 32]).unwrap();
        assert_eq!(
            verify_quote(
                &attest,
                &sign(&other, &attest),
                &ak_public(),
                NONCE,
                &pcr_values()
            ),
            Err(Error::BadSignature)
        );
        // A signature over different bytes.
        let mut tampered = attest.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(
            verify_quote(
                &tampered,
                &sign(&ak_key(), &attest),
                &ak_public(),
                NONCE,
                &pcr_values()
            ),
            Err(Error::BadSignature)
        );
        // A signature hashed with SHA-384 is refused before any curve arithmetic.
        let mut sha384 = sign(&ak_key(), &attest);
        sha384[3] = 0x0c;
        assert_eq!(
            verify_quote(&attest, &sha384, &ak_public(), NONCE, &pcr_values()),
            Err(Error::UnsupportedAlgorithm {
                what: "signature hash",
                alg: TPM_ALG_SHA384
            })
        );
    }

    #[test]
    fn refuses_a_wrong_nonce() {
        let attest = good_quote();
        let sig = sign(&ak_key(), &attest);
        assert_eq!(
            verify_quote(&attest, &sig, &ak_public(), b"another nonce", &pcr_values()),
            Err(Error::QualifyingDataMismatch)
        );
        assert_eq!(
            verify_quote(&attest, &sig, &ak_public(), b"", &pcr_values()),
            Err(Error::QualifyingDataMismatch)
        );
    }

    #[test]
    fn refuses_a_wrong_pcr_value() {
        let attest = good_quote();
        let sig = sign(&ak_key(), &attest);
        let mut values = pcr_values();
        values.insert(7, [0x77; 32]);
        assert_eq!(
            verify_quote(&attest, &sig, &ak_public(), NONCE, &values),
            Err(Error::PcrDigestMismatch)
        );
    }

    #[test]
    fn refuses_a_wrong_selection() {
        // The quote covers 0, 7, 23 but the verifier was given values for 0, 23 only.
        let attest = good_quote();
        let sig = sign(&ak_key(), &attest);
        let mut fewer = pcr_values();
        fewer.remove(&7);
        assert_eq!(
            verify_quote(&attest, &sig, &ak_public(), NONCE, &fewer),
            Err(Error::PcrSelectionMismatch {
                selected: vec![0, 7, 23],
                values: vec![0, 23]
            })
        );
        // A quote whose bitmap selects 0, 7, 22 with a digest over the right values.
        let shifted = quote_bytes(NONCE, [0x81, 0x00, 0x40], &pcr_values());
        assert_eq!(
            check(&shifted),
            Err(Error::PcrSelectionMismatch {
                selected: vec![0, 7, 22],
                values: vec![0, 7, 23]
            })
        );
        // The SHA-1 bank.
        let mut sha1 = good_quote();
        let bank = header([0x80, 0x18], NONCE).len() + 5;
        sha1[bank] = 0x04;
        assert_eq!(
            check(&sha1),
            Err(Error::UnsupportedAlgorithm {
                what: "quoted PCR bank",
                alg: 0x0004
            })
        );
        // Two banks.
        let mut two = header([0x80, 0x18], NONCE);
        two.extend_from_slice(&[0, 0, 0, 2, 0x00, 0x0b, 0x03, 0x81, 0x00, 0x80]);
        two.extend_from_slice(&[0x00, 0x04, 0x03, 0x00, 0x00, 0x00]);
        two.extend_from_slice(&[0x00, 0x20]);
        two.extend_from_slice(&pcr_digest(&pcr_values()));
        assert_eq!(check(&two), Err(Error::PcrBankCount { found: 2 }));
    }

    #[test]
    fn refuses_truncated_and_trailing_input() {
        let attest = good_quote();
        let truncated = &attest[..attest.len() - 1];
        assert_eq!(
            check(truncated),
            Err(Error::Truncated {
                what: "TPMS_QUOTE_INFO.pcrDigest"
            })
        );
        let mut trailing = attest.clone();
        trailing.push(0);
        assert_eq!(
            check(&trailing),
            Err(Error::TrailingBytes {
                what: "TPMS_ATTEST"
            })
        );

        let sig = sign(&ak_key(), &attest);
        assert_eq!(
            verify_quote(
                &attest,
                &sig[..sig.len() - 1],
                &ak_public(),
                NONCE,
                &pcr_values()
            ),
            Err(Error::Truncated {
                what: "TPMS_SIGNATURE_ECDSA.signatureS"
            })
        );
        let mut long_sig = sig.clone();
        long_sig.push(0);
        assert_eq!(
            verify_quote(&attest, &long_sig, &ak_public(), NONCE, &pcr_values()),
            Err(Error::TrailingBytes {
                what: "TPMT_SIGNATURE"
            })
        );
    }

    #[test]
    fn refuses_bad_magic_and_other_types() {
        let mut magic = good_quote();
        magic[0] = 0xfe;
        assert_eq!(check(&magic), Err(Error::BadMagic { found: 0xfe54_4347 }));
        let mut certify = header([0x80, 0x17], NONCE);
        certify.extend_from_slice(&[0, 1, 0xaa, 0, 1, 0xbb]);
        assert_eq!(
            check(&certify),
            Err(Error::WrongAttestType {
                expected: 0x8018,
                found: 0x8017
            })
        );
        let mut time = good_quote();
        time[5] = 0x19;
        assert_eq!(check(&time), Err(Error::UnsupportedAttestType(0x8019)));
    }

    #[test]
    fn refuses_a_key_that_is_not_a_restricted_signing_key() {
        let attest = good_quote();
        let sig = sign(&ak_key(), &attest);
        let unrestricted = Public::p256_signing_key(
            ak_key().verifying_key(),
            ObjectAttributes::SIGN_ENCRYPT | ObjectAttributes::USER_WITH_AUTH,
            &[],
        )
        .unwrap();
        assert_eq!(
            verify_quote(&attest, &sig, &unrestricted, NONCE, &pcr_values()),
            Err(Error::AttributeMismatch {
                what: "attestation key",
                found: 0x0004_0040,
                missing: ObjectAttributes::RESTRICTED.bits(),
                forbidden: 0,
            })
        );
    }

    fn statement_key() -> Public {
        let key = SigningKey::from_slice(&[0x33; 32]).unwrap();
        Public::p256_signing_key(
            key.verifying_key(),
            ObjectAttributes::FIXED_TPM
                | ObjectAttributes::FIXED_PARENT
                | ObjectAttributes::SENSITIVE_DATA_ORIGIN
                | ObjectAttributes::SIGN_ENCRYPT,
            &[0x44; 32],
        )
        .unwrap()
    }

    fn certify_bytes(name: &[u8], nonce: &[u8]) -> Vec<u8> {
        let mut a = header([0x80, 0x17], nonce);
        a.extend_from_slice(&[0x00, name.len() as u8]);
        a.extend_from_slice(name);
        a.extend_from_slice(&[0x00, 0x02, 0x40, 0x01]); // qualifiedName (a stub)
        a
    }

    #[test]
    fn verifies_a_certification() {
        let stmt = statement_key();
        let attest = certify_bytes(&stmt.name(), NONCE);
        let sig = sign(&ak_key(), &attest);
        let parsed = verify_certify(&attest, &sig, &ak_public(), &stmt, NONCE).unwrap();
        assert_eq!(
            parsed.attested,
            Attested::Certify {
                name: stmt.name(),
                qualified_name: vec![0x40, 0x01]
            }
        );
        // Another key's name.
        assert_eq!(
            verify_certify(&attest, &sig, &ak_public(), &ak_public(), NONCE),
            Err(Error::NameMismatch)
        );
        assert_eq!(
            verify_certify(&attest, &sig, &ak_public(), &stmt, b"x"),
            Err(Error::QualifyingDataMismatch)
        );
        let quote = good_quote();
        assert_eq!(
            verify_certify(&quote, &sign(&ak_key(), &quote), &ak_public(), &stmt, NONCE),
            Err(Error::WrongAttestType {
                expected: 0x8017,
                found: 0x8018
            })
        );
    }

    #[test]
    fn verifies_an_nv_certification() {
        let nv = NvPublic {
            index: 0x0150_0002,
            name_alg: TPM_ALG_SHA256,
            attributes: NvAttributes::OWNERREAD | NvAttributes::OWNERWRITE | NvAttributes::WRITTEN,
            auth_policy: vec![],
            data_size: 8,
        };
        let name = nv.name();
        let mut attest = header([0x80, 0x14], NONCE);
        attest.extend_from_slice(&[0x00, name.len() as u8]);
        attest.extend_from_slice(&name);
        attest.extend_from_slice(&[0x00, 0x00, 0x00, 0x02, b'h', b'i']);
        let sig = sign(&ak_key(), &attest);
        let parsed = verify_nv_certify(&attest, &sig, &ak_public(), &nv, NONCE).unwrap();
        assert_eq!(
            parsed.attested,
            Attested::Nv {
                index_name: name,
                offset: 0,
                contents: b"hi".to_vec()
            }
        );
        let mut other = nv.clone();
        other.attributes |= NvAttributes::AUTHREAD;
        assert_eq!(
            verify_nv_certify(&attest, &sig, &ak_public(), &other, NONCE),
            Err(Error::NameMismatch)
        );
    }
}
