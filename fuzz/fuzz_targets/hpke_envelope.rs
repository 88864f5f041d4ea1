//! Fuzz the HPKE envelope of an input as the daemon opens it: a `PUT .../inputs/{slot}`
//! body (strict JSON, then base64 `enc` and `ciphertext`) opened under a fixed instance
//! key, the raw `enc || ciphertext` pair, and — the property — a valid envelope with the
//! input XOR-ed over it: the envelope opens to its plaintext when the mask changes
//! nothing, and never opens once any byte of `enc` or `ciphertext` changed (AES-GCM
//! authenticates both, `enc` through the key schedule).
#![no_main]

use std::sync::OnceLock;

use arbiter_fuzz::{INPUT_CONTEXT, PLAINTEXT, instance_keys};
use arbiter_policy::hpke::{self, ENC_LEN, PrivateKey};
use arbiter_proto::api::{SubmitInput, parse_request};
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;

struct Fixed {
    private: PrivateKey,
    /// `enc || ciphertext` of [`PLAINTEXT`] sealed to the instance key.
    sealed: Vec<u8>,
}

fn fixed() -> &'static Fixed {
    static FIXED: OnceLock<Fixed> = OnceLock::new();
    FIXED.get_or_init(|| {
        let (private, public) = instance_keys();
        let (enc, ct) = hpke::seal(&public, &INPUT_CONTEXT, PLAINTEXT).expect("sealing");
        let mut sealed = enc;
        sealed.extend_from_slice(&ct);
        Fixed { private, sealed }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixed();
    // As the daemon receives it: the body, then base64, then the length of `enc`.
    if let Ok(body) = parse_request::<SubmitInput>(data) {
        let b64 = base64::engine::general_purpose::STANDARD;
        if let (Ok(enc), Ok(ct)) = (b64.decode(&body.enc), b64.decode(&body.ciphertext))
            && enc.len() == ENC_LEN
            && let Ok(plain) = hpke::open(&f.private, &INPUT_CONTEXT, &enc, &ct)
        {
            // Only the seeds were sealed to this key, all of the same plaintext.
            assert_eq!(plain.as_slice(), PLAINTEXT);
        }
    }
    // The raw pair, any split: an `enc` of the wrong length or off the curve is refused.
    if let Some((&cut, rest)) = data.split_first() {
        let (enc, ct) = rest.split_at(usize::from(cut).min(rest.len()));
        assert!(
            hpke::open(&f.private, &INPUT_CONTEXT, enc, ct).is_err() || enc.len() == ENC_LEN,
            "an enc of {} bytes opened",
            enc.len()
        );
    }
    // Tampering: the input is a mask over `enc || ciphertext`.
    let mut tampered = f.sealed.clone();
    for (b, m) in tampered.iter_mut().zip(data) {
        *b ^= m;
    }
    let (enc, ct) = tampered.split_at(ENC_LEN);
    let opened = hpke::open(&f.private, &INPUT_CONTEXT, enc, ct);
    if tampered == f.sealed {
        assert_eq!(
            opened.expect("the untouched envelope opens").as_slice(),
            PLAINTEXT
        );
    } else {
        assert!(opened.is_err(), "a tampered envelope opened");
    }
});
