//! The evidence's identity checks: the attestation key (parsed, matching its published
//! name and PEM, docs/protocol.md's attributes, pinned), the binding leaf against the expectations
//! and its inclusion under the Merkle root, and the quote with that root as qualifying data.

use p256::ecdsa::VerifyingKey;
use p256::pkcs8::DecodePublicKey as _;

use super::Appraisal;
use crate::appraisal::Check;
use crate::evidence::{check_same_startup, require_ak};
use crate::tpm::Public;
use crate::{Error, verify_quote};

impl<'a> Appraisal<'a> {
    /// The AK: parses, matches its published name and PEM, has docs/protocol.md's attributes, and
    /// is the pinned one.
    pub(super) fn ak(&mut self) -> Option<Public> {
        let e = &self.evidence.ak;
        let ak = match Public::from_tpm2b(&e.tpm2b_public.0) {
            Ok(ak) => ak,
            Err(err) => {
                self.fail(Check::AkKey, format!("AK TPM2B_PUBLIC: {err}"));
                self.fail(
                    Check::AkPin,
                    "the AK cannot be compared with the pinned one",
                );
                return None;
            }
        };
        let name = ak.name();
        self.appraised.ak_name = Some(name.clone());
        if name != e.name.0 {
            self.fail(
                Check::AkKey,
                format!(
                    "the AK's name is {}, not the {} published with it",
                    hex::encode(&name),
                    hex::encode(&e.name.0)
                ),
            );
        }
        if let Err(err) = require_ak(&ak) {
            self.fail(Check::AkKey, err.to_string());
        }
        let key = ak.p256_verifying_key();
        match (&key, VerifyingKey::from_public_key_pem(e.public_pem.trim())) {
            (Ok(k), Ok(pem)) if *k == pem => {}
            (Ok(_), Ok(_)) => self.fail(
                Check::AkKey,
                "the published AK PEM is not the key of its TPM2B_PUBLIC",
            ),
            (_, Err(err)) => self.fail(Check::AkKey, format!("AK PEM: {err}")),
            (Err(err), _) => self.fail(Check::AkKey, format!("AK key: {err}")),
        }
        let pin = &self.policy.ak;
        if pin.name.is_none() && pin.public_key.is_none() {
            self.fail(
                Check::AkPin,
                "the policy pins no AK (ak_name or ak_public_pem): enrol the AK first",
            );
        }
        if let Some(pinned) = &pin.name
            && *pinned != name
        {
            self.fail(
                Check::AkPin,
                format!(
                    "AK name {} is not the pinned {}",
                    hex::encode(&name),
                    hex::encode(pinned)
                ),
            );
        }
        if let Some(pinned) = &pin.public_key
            && key.as_ref().ok() != Some(pinned)
        {
            self.fail(Check::AkPin, "the AK is not the pinned public key");
        }
        Some(ak)
    }

    /// The binding leaf against the expectations, and its inclusion under the root.
    pub(super) fn binding(&mut self) -> bool {
        let b = &self.evidence.binding;
        let x = self.expect;
        let mut fresh = true;
        match &x.nonce {
            Some(nonce) if *nonce != b.leaf.nonce => {
                self.fail(
                    Check::Binding,
                    format!(
                        "the quote is bound to nonce {}, not ours ({nonce}): replayed or for another request",
                        b.leaf.nonce
                    ),
                );
                fresh = false;
            }
            Some(_) => {}
            None => fresh = false,
        }
        if let Some(spki) = &x.tls_spki_sha256
            && *spki != b.leaf.tls_spki_sha256
        {
            self.fail(
                Check::Binding,
                format!(
                    "the quote is bound to TLS key {}, not the one this connection used ({spki})",
                    b.leaf.tls_spki_sha256
                ),
            );
        }
        if (x.nonce.is_some() || x.instance_id.is_some()) && b.leaf.instance_id != x.instance_id {
            self.fail(
                Check::Binding,
                format!(
                    "the quote is bound to instance {:?}, not {:?}",
                    b.leaf.instance_id, x.instance_id
                ),
            );
        }
        let evidence_instance = self.evidence.instance.as_ref().map(|i| &i.instance_id);
        if b.leaf.instance_id.as_ref() != evidence_instance {
            self.fail(
                Check::Binding,
                format!(
                    "the leaf names instance {:?} but the evidence describes {:?}",
                    b.leaf.instance_id, evidence_instance
                ),
            );
        }
        if let Err(err) = b.verify() {
            self.fail(Check::Binding, err.to_string());
            fresh = false;
        }
        fresh
    }

    /// The quote, with the Merkle root as qualifying data.
    pub(super) fn quote(&mut self, ak: Option<&Public>) -> bool {
        let q = &self.evidence.quote;
        let pcrs = q.pcr_values();
        self.appraised.pcrs = pcrs.clone();
        let Some(ak) = ak else {
            self.fail(Check::Quote, "not verified: no usable AK");
            return false;
        };
        match verify_quote(
            &q.attest.0,
            &q.signature.0,
            ak,
            &self.evidence.binding.root.0,
            &pcrs,
        ) {
            Ok(attest) => {
                self.as_of = Some(attest.clock_info);
                if let Some(earlier) = &self.expect.same_startup_as
                    && let Err(err) = check_same_startup(earlier, &attest.clock_info)
                {
                    self.fail(Check::Startup, err.to_string());
                }
                true
            }
            Err(Error::QualifyingDataMismatch) => {
                self.fail(
                    Check::Quote,
                    "the quote's qualifying data is not the binding's Merkle root",
                );
                false
            }
            Err(err) => {
                self.fail(Check::Quote, err.to_string());
                false
            }
        }
    }
}
