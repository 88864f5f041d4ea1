//! Fuzz the `TPMS_ATTEST` parser of arbiter-policy (quotes, certifications, NV
//! certifications): any bytes must parse or be refused without panicking; a structure
//! that parses must marshal back to exactly the same bytes, and the quote checks on it
//! must return an answer.
#![no_main]

use arbiter_policy::tpm::Attest;
use arbiter_policy::{EcdsaSignature, NvPublic, Public, verify_quote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(attest) = Attest::parse(data) {
        let bytes = attest.marshal().expect("a parsed TPMS_ATTEST marshals");
        assert_eq!(bytes, data, "marshal(parse(x)) == x");
        let _ = attest.quoted_pcrs();
    }
    // The structures that travel beside a TPMS_ATTEST, from the same bytes.
    if let Ok(sig) = EcdsaSignature::parse(data) {
        assert_eq!(sig.marshal(), data);
        let _ = sig.to_raw_rs();
    }
    if let Ok(public) = Public::from_tpm2b(data) {
        assert_eq!(public.to_tpm2b(), data);
        let _ = public.name();
        let _ = public.public_key_pem();
        // A quote check with this key and the input as the attestation: never panics.
        let (attest, sig) = data.split_at(data.len() / 2);
        let _ = verify_quote(attest, sig, &public, b"", &Default::default());
    }
    if let Ok(nv) = NvPublic::from_tpm2b(data) {
        assert_eq!(nv.to_tpm2b(), data);
        let _ = nv.name();
    }
});
