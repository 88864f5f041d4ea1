//! Property tests: every parser fed random bytes and randomly mutated real TPM structures
//! never panics, and whatever it accepts marshals back to exactly the bytes it read.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::tpm::{NvAttributes, NvPublic, PcrSelection, PcrValues, Public, TPM_ALG_SHA256};
use crate::{
    Attest, EcdsaSignature, PolicyDigest, verify_certify, verify_nv_certify, verify_quote,
    verify_signature,
};

const AK: &[u8] = include_bytes!("../testdata/swtpm/ak.pub");
const STMT: &[u8] = include_bytes!("../testdata/swtpm/stmt.pub");
const EK_RSA: &[u8] = include_bytes!("../testdata/swtpm/ek_rsa.pub");
const P384: &[u8] = include_bytes!("../testdata/swtpm/primary_p384.pub");
const QUOTE: &[u8] = include_bytes!("../testdata/swtpm/quote_attest.bin");
const QUOTE_SIG: &[u8] = include_bytes!("../testdata/swtpm/quote_sig.bin");
const CERTIFY: &[u8] = include_bytes!("../testdata/swtpm/certify_attest.bin");
const NV_CERTIFY: &[u8] = include_bytes!("../testdata/swtpm/nvcertify_attest.bin");

fn nv_public() -> NvPublic {
    NvPublic {
        index: 0x0150_0001,
        name_alg: TPM_ALG_SHA256,
        attributes: NvAttributes::POLICYREAD | NvAttributes::POLICYWRITE | NvAttributes::NO_DA,
        auth_policy: vec![0x3c; 32],
        data_size: 40,
    }
}

/// Applies byte edits (position modulo length, new value) and an optional cut.
fn mutate(base: &[u8], edits: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
    let mut bytes = base.to_vec();
    for &(pos, value) in edits {
        if !bytes.is_empty() {
            let len = bytes.len();
            bytes[pos % len] = value;
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (base.len() + 1));
    }
    bytes
}

/// Runs every parser on `bytes`; whatever parses must marshal back to `bytes`.
fn parse_everything(bytes: &[u8]) {
    if let Ok(public) = Public::from_tpm2b(bytes) {
        assert_eq!(public.to_tpm2b(), bytes);
        let _ = (
            public.name(),
            public.p256_verifying_key(),
            public.public_key_pem(),
        );
    }
    if let Ok(public) = Public::from_tpmt(bytes) {
        assert_eq!(public.tpmt_bytes(), bytes);
        let _ = (
            public.name(),
            public.p256_verifying_key(),
            public.public_key_pem(),
        );
    }
    if let Ok(nv) = NvPublic::from_tpm2b(bytes) {
        assert_eq!(nv.to_tpm2b(), bytes);
        let _ = nv.name();
    }
    if let Ok(nv) = NvPublic::parse(bytes) {
        assert_eq!(nv.marshal(), bytes);
    }
    if let Ok(attest) = Attest::parse(bytes) {
        assert_eq!(attest.marshal().unwrap(), bytes);
        let _ = attest.quoted_pcrs();
    }
    if let Ok(sig) = EcdsaSignature::parse(bytes) {
        assert_eq!(sig.marshal(), bytes);
        let _ = (sig.to_p256(), sig.to_raw_rs());
    }
    let _ = PcrSelection::from_bitmap(bytes);
}

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in vec(any::<u8>(), 0..400)) {
        parse_everything(&bytes);
    }

    #[test]
    fn random_evidence_is_refused_without_panic(
        attest in vec(any::<u8>(), 0..200),
        sig in vec(any::<u8>(), 0..100),
    ) {
        let ak = Public::from_tpm2b(AK).unwrap();
        let stmt = Public::from_tpm2b(STMT).unwrap();
        let pcrs = PcrValues::new();
        prop_assert!(verify_signature(&attest, &sig, &ak).is_err());
        prop_assert!(verify_quote(&attest, &sig, &ak, b"", &pcrs).is_err());
        prop_assert!(verify_certify(&attest, &sig, &ak, &stmt, b"").is_err());
        prop_assert!(verify_nv_certify(&attest, &sig, &ak, &nv_public(), b"").is_err());
        // A random signature over the real quote does not verify either.
        prop_assert!(verify_signature(QUOTE, &sig, &ak).is_err());
    }

    #[test]
    fn mutated_tpm_structures_never_panic(
        which in 0usize..9,
        edits in vec((any::<usize>(), any::<u8>()), 0..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let nv = nv_public().to_tpm2b();
        let base: &[u8] = match which {
            0 => AK,
            1 => STMT,
            2 => EK_RSA,
            3 => P384,
            4 => QUOTE,
            5 => QUOTE_SIG,
            6 => CERTIFY,
            7 => NV_CERTIFY,
            _ => &nv,
        };
        let bytes = mutate(base, &edits, cut);
        parse_everything(&bytes);
        // The tpm2b parsers also see the TPMT/TPMS inside, and vice versa.
        if bytes.len() > 2 {
            parse_everything(&bytes[2..]);
        }
    }

    #[test]
    fn any_mutation_of_a_signed_quote_is_refused(
        edits in vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mutated = mutate(QUOTE, &edits, cut);
        prop_assume!(mutated != QUOTE);
        let ak = Public::from_tpm2b(AK).unwrap();
        let pcrs: PcrValues = PcrValues::new();
        prop_assert!(verify_quote(&mutated, QUOTE_SIG, &ak, b"", &pcrs).is_err());
        prop_assert!(verify_signature(&mutated, QUOTE_SIG, &ak).is_err());
    }

    #[test]
    fn pcr_selection_bitmap_round_trip(pcrs in vec(0u8..24, 0..24)) {
        let selection = PcrSelection::new(pcrs.iter().copied()).unwrap();
        prop_assert_eq!(PcrSelection::from_bitmap(&selection.bitmap()).unwrap(), selection.clone());
        let marshalled = selection.marshal();
        prop_assert_eq!(marshalled.len(), 10);
        prop_assert_eq!(&marshalled[7..], &selection.bitmap()[..]);
        let mut sorted = pcrs.clone();
        sorted.sort_unstable();
        sorted.dedup();
        prop_assert_eq!(selection.pcrs(), sorted);
    }

    #[test]
    fn policy_pcr_accepts_exactly_the_selected_values(
        pcrs in vec(0u8..24, 0..10),
        extra in 0u8..24,
        fill in any::<u8>(),
    ) {
        let selection = PcrSelection::new(pcrs.iter().copied()).unwrap();
        let values: PcrValues = selection.pcrs().into_iter().map(|i| (i, [fill; 32])).collect();
        prop_assert!(PolicyDigest::new().pcr(&selection, &values).is_ok());
        let mut more = values.clone();
        more.insert(extra, [fill; 32]);
        prop_assert_eq!(
            PolicyDigest::new().pcr(&selection, &more).is_ok(),
            selection.contains(extra)
        );
    }
}
