//! The TPM layer against a real swtpm: PCRs, quotes (checked by the policy crate and by
//! tpm2-tools), the attestation and statement keys, the sealing index, recovery after the
//! TPM went away, and resource hygiene.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use arbiter_daemon::tpm::{EkAlgorithm, SealedKey, Tpm, TpmError};
use arbiter_policy::{
    NvAttributes, PcrSelection, PolicyDigest, PublicKey, tpm::TPM_CC_SIGN, verify_certify,
    verify_quote,
};
use arbiter_tests::{TestTpm, sha256};
use p256::ecdsa::signature::hazmat::PrehashVerifier;

fn open(tpm: &TestTpm) -> Tpm {
    Tpm::open(tpm.config()).expect("opening the TPM layer on swtpm")
}

#[tokio::test]
async fn extend_gives_sha256_of_old_value_and_digest() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    let sel = PcrSelection::new([23, 16]).unwrap();
    let before = tpm.pcr_read(sel.clone()).await.unwrap();
    let digest = sha256(&[b"function source"]);
    tpm.pcr_extend(23, digest).await.unwrap();
    let after = tpm.pcr_read(sel).await.unwrap();
    assert_eq!(after[&23], sha256(&[&before[&23], &digest]));
    assert_eq!(after[&16], before[&16], "PCR 16 must not move");
    // And tpm2_pcrread, the tool an outside verifier uses, sees the same value.
    let out = sw.tool_ok("tpm2_pcrread", &["sha256:23"]);
    assert!(
        out.to_lowercase().contains(&hex::encode(after[&23])),
        "tpm2_pcrread printed {out}"
    );
}

#[tokio::test]
async fn pcr_reset_and_the_keylime_binding() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    let sel = PcrSelection::new([16]).unwrap();
    tpm.pcr_extend(16, sha256(&[b"someone else"]))
        .await
        .unwrap();
    tpm.pcr_reset(16).await.unwrap();
    assert_eq!(tpm.pcr_read(sel.clone()).await.unwrap()[&16], [0u8; 32]);
    // PCR 0 cannot be reset from locality 0: the TPM refuses, the value stays.
    let pcr0 = PcrSelection::new([0]).unwrap();
    tpm.pcr_extend(0, sha256(&[b"firmware"])).await.unwrap();
    let before = tpm.pcr_read(pcr0.clone()).await.unwrap();
    assert!(tpm.pcr_reset(0).await.is_err());
    assert_eq!(tpm.pcr_read(pcr0).await.unwrap(), before);
    // The quote with a bound PCR: set once (reset + extend), then left as is.
    let digest = sha256(&[b"-----BEGIN PUBLIC KEY-----\n"]);
    let bound = sha256(&[&[0u8; 32], &digest]);
    tpm.pcr_extend(16, sha256(&[b"drift"])).await.unwrap();
    let (quote, rebound) = tpm
        .quote_bound(sel.clone(), b"nonce".to_vec(), 16, digest)
        .await
        .unwrap();
    assert!(rebound);
    assert_eq!(quote.pcrs[&16], bound);
    let (quote, rebound) = tpm
        .quote_bound(sel, b"nonce2".to_vec(), 16, digest)
        .await
        .unwrap();
    assert!(!rebound);
    assert_eq!(quote.pcrs[&16], bound);
    let out = sw.tool_ok("tpm2_pcrread", &["sha256:16"]);
    assert!(out.to_lowercase().contains(&hex::encode(bound)), "{out}");
}

#[tokio::test]
async fn reads_more_than_eight_pcrs_at_once() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    let sel = PcrSelection::new(0..24).unwrap();
    let values = tpm.pcr_read(sel).await.unwrap();
    assert_eq!(values.len(), 24);
    // swtpm: PCRs 0..=16 and 23 start at zero, 17..=22 (DRTM) at all-ones.
    assert_eq!(values[&0], [0u8; 32]);
    assert_eq!(values[&17], [0xffu8; 32]);
}

#[tokio::test]
async fn quote_verifies_with_policy_crate_and_tpm2_checkquote() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    tpm.pcr_extend(23, sha256(&[b"m"])).await.unwrap();
    let ak = tpm.attestation_key().await.unwrap();
    let selection = tpm.config().quote_selection().unwrap();
    let nonce = tpm.random(32).await.unwrap();
    let quote = tpm.quote(selection.clone(), nonce.clone()).await.unwrap();
    assert_eq!(
        quote.pcrs.keys().copied().collect::<Vec<_>>(),
        selection.pcrs()
    );

    let attest = verify_quote(
        &quote.attest,
        &quote.signature,
        &ak.public,
        &nonce,
        &quote.pcrs,
    )
    .expect("the policy crate verifies the quote");
    assert_eq!(attest.clock_info, quote.clock);

    // A verifier that trusts nothing of ours: tpm2_checkquote on the raw structures.
    let write = |name: &str, bytes: &[u8]| {
        let p = sw.path(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    };
    let ak_pem = write("ak.pem", ak.public_pem().unwrap().as_bytes());
    let msg = write("attest.bin", &quote.attest);
    let sig = write("sig.bin", &quote.signature);
    let values: Vec<u8> = quote.pcrs.values().flatten().copied().collect();
    let pcrs = write("pcrs.bin", &values);
    let list = format!(
        "sha256:{}",
        selection
            .pcrs()
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let nonce_hex = hex::encode(&nonce);
    let args = [
        "-u", &ak_pem, "-m", &msg, "-s", &sig, "-f", &pcrs, "-l", &list, "-g", "sha256", "-q",
        &nonce_hex,
    ];
    sw.tool_ok("tpm2_checkquote", &args);

    // The same tool refuses another nonce and a forged PCR value.
    let other = hex::encode([7u8; 32]);
    let mut bad = args;
    bad[13] = &other;
    assert!(!sw.tool("tpm2_checkquote", &bad).status.success());
    let mut forged = values.clone();
    forged[0] ^= 1;
    let forged = write("forged.bin", &forged);
    let mut bad = args;
    bad[7] = &forged;
    assert!(!sw.tool("tpm2_checkquote", &bad).status.success());

    // And so does the policy crate.
    let mut wrong = quote.pcrs.clone();
    wrong.insert(23, [0u8; 32]);
    assert!(verify_quote(&quote.attest, &quote.signature, &ak.public, &nonce, &wrong).is_err());
    assert!(
        verify_quote(
            &quote.attest,
            &quote.signature,
            &ak.public,
            &[1u8; 32],
            &quote.pcrs
        )
        .is_err()
    );
}

#[tokio::test]
async fn attestation_key_has_the_spec_attributes_and_survives_reopen_and_restart() {
    let mut sw = TestTpm::start();
    let first = open(&sw).attestation_key().await.unwrap();
    let attrs = first.public.attributes();
    use arbiter_policy::ObjectAttributes as A;
    for (bit, name) in [
        (A::FIXED_TPM, "fixedTPM"),
        (A::FIXED_PARENT, "fixedParent"),
        (A::SENSITIVE_DATA_ORIGIN, "sensitiveDataOrigin"),
        (A::USER_WITH_AUTH, "userWithAuth"),
        (A::RESTRICTED, "restricted"),
        (A::SIGN_ENCRYPT, "sign"),
    ] {
        assert!(attrs.contains(bit), "AK lacks {name}: {attrs:?}");
    }
    assert!(!attrs.contains(A::ADMIN_WITH_POLICY) && !attrs.contains(A::DECRYPT));
    assert!(
        matches!(first.public.key(), PublicKey::Ecc { curve, .. } if *curve == arbiter_policy::tpm::TPM_ECC_NIST_P256)
    );

    let reopened = open(&sw).attestation_key().await.unwrap();
    assert_eq!(reopened.name, first.name, "same AK after reopening");
    sw.swtpm.restart().unwrap();
    let restarted = open(&sw).attestation_key().await.unwrap();
    assert_eq!(restarted.name, first.name, "same AK after a TPM restart");
    assert_eq!(restarted.tpm2b_public, first.tpm2b_public);
}

/// Both keys are noDA: a power loss (swtpm killed, no TPM2_Shutdown) after they were used
/// is no dictionary-attack failure. swtpm locks DA-protected objects out after 3 such
/// failures (TPM2_PT_MAX_AUTH_FAIL), so with DA-protected keys the quote after the third
/// power loss failed with TPM_RC_LOCKOUT, 0x921 (docs/appliance.md); five here.
#[tokio::test]
async fn keys_are_da_exempt_so_power_losses_never_lock_out_quotes() {
    use arbiter_policy::ObjectAttributes as A;
    let mut sw = TestTpm::start();
    let tpm = open(&sw);
    let ak = tpm.attestation_key().await.unwrap();
    assert!(ak.public.attributes().contains(A::NO_DA), "AK: {ak:?}");
    let key = tpm.ensure_statement_key().await.unwrap();
    assert!(key.public.attributes().contains(A::NO_DA), "statement key");
    let selection = PcrSelection::new([23]).unwrap();
    for loss in 0..=5 {
        let quote = tpm
            .quote(selection.clone(), vec![loss; 32])
            .await
            .unwrap_or_else(|e| panic!("quote after {loss} power losses: {e}"));
        verify_quote(
            &quote.attest,
            &quote.signature,
            &ak.public,
            &[loss; 32],
            &quote.pcrs,
        )
        .unwrap();
        tpm.certify_statement_key(vec![loss; 16])
            .await
            .unwrap_or_else(|e| panic!("certify after {loss} power losses: {e}"));
        tpm.sign([loss; 32]).await.unwrap();
        if loss < 5 {
            sw.swtpm.kill();
            sw.swtpm.restart().unwrap();
        }
    }
    assert_eq!(open(&sw).attestation_key().await.unwrap().name, ak.name);
}

/// An AK created by a release before noDA (the same template, noDA clear) stays: its name
/// is what parties pinned. Made here with tpm2-tools, then opened by the daemon's layer.
#[tokio::test]
async fn an_ak_without_no_da_from_an_earlier_release_is_kept() {
    use arbiter_policy::ObjectAttributes as A;
    let sw = TestTpm::start();
    let ctx = sw.dir().join("legacy-ak.ctx");
    let tpm2 = |args: &[&str]| {
        let out = std::process::Command::new(args[0])
            .args(&args[1..])
            .env("TPM2TOOLS_TCTI", sw.tcti())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", args[0]));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ctx_arg = ctx.to_str().unwrap();
    tpm2(&[
        "tpm2_createprimary",
        "-C",
        "e",
        "-g",
        "sha256",
        "-G",
        "ecc256:ecdsa-sha256:null",
        "-a",
        "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign",
        "-c",
        ctx_arg,
    ]);
    let handle = format!("{:#x}", sw.config().ak_handle);
    tpm2(&["tpm2_evictcontrol", "-C", "o", "-c", ctx_arg, &handle]);
    tpm2(&["tpm2_flushcontext", "-t"]);

    let tpm = open(&sw);
    let ak = tpm
        .attestation_key()
        .await
        .expect("the earlier AK is accepted");
    assert!(!ak.public.attributes().contains(A::NO_DA));
    let quote = tpm
        .quote(PcrSelection::new([23]).unwrap(), vec![1; 32])
        .await
        .unwrap();
    verify_quote(
        &quote.attest,
        &quote.signature,
        &ak.public,
        &[1; 32],
        &quote.pcrs,
    )
    .unwrap();
    assert_eq!(open(&sw).attestation_key().await.unwrap().name, ak.name);
}

#[tokio::test]
async fn statement_key_is_certified_by_the_ak_and_its_signatures_verify() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    let ak = tpm.attestation_key().await.unwrap();
    let key = tpm.ensure_statement_key().await.unwrap();
    use arbiter_policy::ObjectAttributes as A;
    let attrs = key.public.attributes();
    assert!(attrs.contains(A::FIXED_TPM) && attrs.contains(A::FIXED_PARENT));
    assert!(attrs.contains(A::SENSITIVE_DATA_ORIGIN) && attrs.contains(A::SIGN_ENCRYPT));
    assert!(!attrs.contains(A::USER_WITH_AUTH) && !attrs.contains(A::ADMIN_WITH_POLICY));
    assert!(!attrs.contains(A::DECRYPT) && !attrs.contains(A::RESTRICTED));

    // Its policy is PolicyPCR(platform) then PolicyCommandCode(Sign), as a verifier
    // recomputes it from the PCR values it appraised.
    let platform = tpm.config().platform_selection().unwrap();
    let values = tpm.pcr_read(platform.clone()).await.unwrap();
    let expected = PolicyDigest::new()
        .pcr(&platform, &values)
        .unwrap()
        .command_code(TPM_CC_SIGN);
    assert_eq!(key.public.auth_policy(), expected.as_bytes());

    let nonce = b"certify nonce".to_vec();
    let cert = tpm.certify_statement_key(nonce.clone()).await.unwrap();
    verify_certify(
        &cert.attest,
        &cert.signature,
        &ak.public,
        &key.public,
        &nonce,
    )
    .expect("the certification verifies against the AK");
    assert!(
        verify_certify(
            &cert.attest,
            &cert.signature,
            &ak.public,
            &ak.public,
            &nonce
        )
        .is_err()
    );

    let verifying = key.public.p256_verifying_key().unwrap();
    let sessions = tpm.policy_sessions_started().await.unwrap();
    for i in 0..3u8 {
        let digest = sha256(&[&[i]]);
        let sig = tpm.sign(digest).await.unwrap();
        verifying
            .verify_prehash(&digest, &sig.to_p256().unwrap())
            .expect("statement signature verifies");
        assert!(
            verifying
                .verify_prehash(&sha256(&[b"other"]), &sig.to_p256().unwrap())
                .is_err()
        );
    }
    // The three signatures shared one policy session: each successful Sign reset its
    // policy, so none was refused and retried in a new one.
    assert_eq!(tpm.policy_sessions_started().await.unwrap(), sessions + 1);
    // A kept session flushed from outside costs no signature: the next one starts anew.
    sw.tool_ok("tpm2_flushcontext", &["--loaded-session"]);
    let digest = sha256(&[b"after the flush"]);
    let sig = tpm.sign(digest).await.unwrap();
    verifying
        .verify_prehash(&digest, &sig.to_p256().unwrap())
        .expect("statement signature verifies");
    assert_eq!(tpm.policy_sessions_started().await.unwrap(), sessions + 2);
    // The same key after reopening.
    let again = open(&sw).ensure_statement_key().await.unwrap();
    assert_eq!(again.name, key.name);
}

#[tokio::test]
async fn sealing_index_reads_back_rotates_and_refuses_a_changed_platform() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    assert!(tpm.sealing_index().await.unwrap().is_none());
    let first = SealedKey::generate(0);
    let first_key = *first.key();
    let index = tpm.define_sealing_index(first).await.unwrap();

    // Exactly docs/protocol.md's public area, WRITTEN after the first write.
    let want = NvAttributes(
        NvAttributes::POLICYREAD.0
            | NvAttributes::POLICYWRITE.0
            | NvAttributes::NO_DA.0
            | NvAttributes::WRITTEN.0,
    );
    assert_eq!(index.nv_public.attributes, want);
    assert_eq!(index.nv_public.data_size, 40);
    let platform = tpm.config().platform_selection().unwrap();
    let values = tpm.pcr_read(platform.clone()).await.unwrap();
    let policy = PolicyDigest::new().pcr(&platform, &values).unwrap();
    assert_eq!(index.nv_public.auth_policy, policy.as_bytes());
    // tpm2_nvreadpublic (an outside tool) reports the same name.
    let out = sw.tool_ok(
        "tpm2_nvreadpublic",
        &[&format!("{:#x}", index.nv_public.index)],
    );
    assert!(
        out.contains(&hex::encode(&index.name)),
        "tpm2_nvreadpublic: {out}"
    );

    let read = tpm.read_sealing_key().await.unwrap();
    assert_eq!(read.key(), &first_key);
    assert_eq!(read.epoch(), 0);

    // Rotation: the new key reads back and the old one is gone from the TPM.
    let next = SealedKey::generate(1);
    let next_key = *next.key();
    tpm.write_sealing_key(next).await.unwrap();
    let read = tpm.read_sealing_key().await.unwrap();
    assert_eq!((read.key(), read.epoch()), (&next_key, 1));
    assert_ne!(read.key(), &first_key);
    // The owner cannot read it either (no OWNERREAD).
    let owner = sw.tool(
        "tpm2_nvread",
        &[
            "-C",
            "o",
            "-s",
            "40",
            &format!("{:#x}", index.nv_public.index),
        ],
    );
    assert!(!owner.status.success(), "owner read must be refused");

    // Sign works before the platform changes ...
    tpm.ensure_statement_key().await.unwrap();
    tpm.sign([1u8; 32]).await.unwrap();
    // ... then another boot component is measured into PCR 9.
    sw.tool_ok(
        "tpm2_pcrextend",
        &[&format!(
            "9:sha256={}",
            hex::encode(sha256(&[b"other kernel"]))
        )],
    );
    let err = tpm.read_sealing_key().await.unwrap_err();
    assert!(
        matches!(
            err,
            TpmError::PolicyNotSatisfied {
                object: "sealing index",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string().contains("platform PCRs [0, 2, 4, 7, 9]"),
        "{err}"
    );
    let err = tpm.sign([2u8; 32]).await.unwrap_err();
    assert!(
        matches!(
            err,
            TpmError::PolicyNotSatisfied {
                object: "statement key",
                ..
            }
        ),
        "{err}"
    );
    // And the checked public area no longer matches the platform either.
    let err = tpm.sealing_index().await.unwrap_err();
    assert!(err.to_string().contains("authPolicy"), "{err}");
    let err = tpm.ensure_statement_key().await.unwrap_err();
    assert!(matches!(err, TpmError::PolicyNotSatisfied { .. }), "{err}");
}

#[tokio::test]
async fn an_index_with_other_attributes_or_policy_is_refused() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    let index = format!("{:#x}", tpm.config().sealing_nv_index);
    // Same handle, owner-readable: refused.
    sw.tool_ok(
        "tpm2_nvdefine",
        &[
            &index,
            "-C",
            "o",
            "-s",
            "40",
            "-a",
            "ownerread|ownerwrite|policywrite|policyread|no_da",
        ],
    );
    let err = tpm.sealing_index().await.unwrap_err();
    assert!(
        matches!(
            err,
            TpmError::UnexpectedObject {
                object: "sealing index",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("attributes"), "{err}");
    assert!(tpm.read_sealing_key().await.is_err());
    assert!(
        tpm.define_sealing_index(SealedKey::generate(0))
            .await
            .is_err()
    );
    sw.tool_ok("tpm2_nvundefine", &[&index, "-C", "o"]);

    // Right attributes, but a policy over PCR 16 instead of the platform set: refused.
    let policy = sw.path("policy.bin");
    let session = sw.path("session.ctx");
    let session_s = session.display().to_string();
    sw.tool_ok("tpm2_startauthsession", &["-S", &session_s]);
    sw.tool_ok(
        "tpm2_policypcr",
        &[
            "-S",
            &session_s,
            "-l",
            "sha256:16",
            "-L",
            &policy.display().to_string(),
        ],
    );
    sw.tool_ok("tpm2_flushcontext", &[&session_s]);
    sw.tool_ok(
        "tpm2_nvdefine",
        &[
            &index,
            "-C",
            "o",
            "-s",
            "40",
            "-a",
            "policywrite|policyread|no_da",
            "-L",
            &policy.display().to_string(),
        ],
    );
    let err = tpm.sealing_index().await.unwrap_err();
    assert!(err.to_string().contains("authPolicy"), "{err}");
}

#[tokio::test]
async fn software_policy_digests_equal_the_tpms() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    tpm.pcr_extend(9, sha256(&[b"kernel"])).await.unwrap();
    for pcrs in [
        vec![23],
        vec![0, 2, 4, 7, 9],
        vec![16, 23],
        (0..24).collect(),
    ] {
        let sel = PcrSelection::new(pcrs.clone()).unwrap();
        let values = tpm.pcr_read(sel.clone()).await.unwrap();
        let base = PolicyDigest::new().pcr(&sel, &values).unwrap();
        let cases = [
            (None, false, base),
            (Some(TPM_CC_SIGN), false, base.command_code(TPM_CC_SIGN)),
            (
                Some(TPM_CC_SIGN),
                true,
                base.command_code(TPM_CC_SIGN).auth_value(),
            ),
            (None, true, base.auth_value()),
        ];
        for (cc, auth, software) in cases {
            let s = sel.clone();
            let tpm_digest = tpm
                .run("tpm_policy_digest", move |d| {
                    d.tpm_policy_digest(&s, cc, auth)
                })
                .await
                .unwrap();
            assert_eq!(
                tpm_digest,
                software.as_bytes().to_vec(),
                "PCRs {pcrs:?}, command code {cc:?}, auth value {auth}"
            );
        }
    }
}

#[tokio::test]
async fn endorsement_keys_and_certificates_match() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    let eks = tpm.endorsement_keys().await.unwrap();
    let algs: Vec<_> = eks.iter().map(|e| e.alg).collect();
    assert_eq!(algs, [EkAlgorithm::Rsa2048, EkAlgorithm::EccNistP384]);
    for ek in &eks {
        let cert = ek
            .cert_der
            .as_ref()
            .expect("swtpm_setup wrote EK certificates");
        let public = arbiter_policy::Public::from_tpm2b(&ek.tpm2b_public).unwrap();
        // The certificate certifies this very key: its SubjectPublicKeyInfo holds the
        // public area's modulus or point.
        let key_bytes: Vec<u8> = match public.key() {
            PublicKey::Rsa { modulus, .. } => modulus.clone(),
            PublicKey::Ecc { x, y, .. } => [x.as_slice(), y.as_slice()].concat(),
        };
        assert!(
            cert.windows(key_bytes.len()).any(|w| w == key_bytes),
            "{} certificate does not hold the EK's public key",
            ek.alg.as_str()
        );
        // And the certificate chains to the private CA of this swtpm.
        let der = sw.path(&format!("ek-{}.der", ek.alg.as_str()));
        std::fs::write(&der, cert).unwrap();
        let pem = sw.path(&format!("ek-{}.pem", ek.alg.as_str()));
        let conv = std::process::Command::new("openssl")
            .args(["x509", "-inform", "DER", "-in"])
            .arg(&der)
            .arg("-out")
            .arg(&pem)
            .status()
            .unwrap();
        assert!(conv.success());
        let verify = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&sw.state.ca_root_pem)
            .arg("-untrusted")
            .arg(&sw.state.ca_issuer_pem)
            .arg(&pem)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout) + String::from_utf8_lossy(&verify.stderr)
        );
    }
    // The P-384 EK uses the H-3 template's SHA-384 name algorithm.
    let p384 = arbiter_policy::Public::from_tpm2b(&eks[1].tpm2b_public).unwrap();
    assert_eq!(p384.name_alg(), arbiter_policy::tpm::TPM_ALG_SHA384);
}

#[tokio::test]
async fn a_tpm_that_went_away_gives_a_clear_error_then_recovers() {
    let mut sw = TestTpm::start();
    let tpm = open(&sw);
    tpm.ensure_statement_key().await.unwrap();
    tpm.define_sealing_index(SealedKey::generate(0))
        .await
        .unwrap();
    let before = tpm.clock().await.unwrap();

    sw.swtpm.kill();
    let err = tpm
        .pcr_read(PcrSelection::new([23]).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, TpmError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("stopped answering"), "{err}");
    // While it is down, every request fails with a clear error and none hangs.
    let err = tpm.random(8).await.unwrap_err();
    assert!(err.to_string().contains("TPM"), "{err}");

    sw.swtpm.restart().unwrap();
    let after = tpm.clock().await.expect("the layer reconnects on its own");
    assert!(
        (after.reset_count, after.restart_count) != (before.reset_count, before.restart_count),
        "a TPM startup shows in the clock info: {before:?} -> {after:?}"
    );
    // Persistent keys and NV survived; PCRs were reset.
    let ak = tpm.attestation_key().await.unwrap();
    let quote = tpm
        .quote(PcrSelection::new([23]).unwrap(), vec![5; 32])
        .await
        .unwrap();
    verify_quote(
        &quote.attest,
        &quote.signature,
        &ak.public,
        &[5; 32],
        &quote.pcrs,
    )
    .unwrap();
    assert_eq!(quote.pcrs[&23], [0u8; 32]);
    tpm.read_sealing_key().await.unwrap();
    tpm.sign([3u8; 32]).await.unwrap();
}

#[tokio::test]
async fn opening_an_absent_tpm_names_the_tcti() {
    let port = arbiter_daemon::swtpm::free_port_pair().unwrap();
    let tcti = format!("swtpm:host=127.0.0.1,port={port}");
    let err = Tpm::open(arbiter_daemon::tpm::TpmConfig::with_tcti(tcti.clone())).unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&tcti) && text.contains("--tcti"), "{text}");
    let err = Tpm::open(arbiter_daemon::tpm::TpmConfig::with_tcti("nonsense:")).unwrap_err();
    assert!(err.to_string().contains("nonsense"), "{err}");
}

#[tokio::test]
async fn two_thousand_mixed_operations_leave_nothing_loaded() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    tpm.ensure_statement_key().await.unwrap();
    tpm.define_sealing_index(SealedKey::generate(0))
        .await
        .unwrap();
    let ak = tpm.attestation_key().await.unwrap();
    let selection = tpm.config().quote_selection().unwrap();
    for i in 0..2000u32 {
        match i % 8 {
            0 => tpm
                .pcr_extend(23, sha256(&[&i.to_be_bytes()]))
                .await
                .unwrap(),
            1 => {
                let q = tpm
                    .quote(selection.clone(), i.to_be_bytes().to_vec())
                    .await
                    .unwrap();
                verify_quote(
                    &q.attest,
                    &q.signature,
                    &ak.public,
                    &i.to_be_bytes(),
                    &q.pcrs,
                )
                .unwrap();
            }
            2 => {
                tpm.sign(sha256(&[&i.to_be_bytes()])).await.unwrap();
            }
            3 => {
                tpm.read_sealing_key().await.unwrap();
            }
            4 => {
                tpm.pcr_read(selection.clone()).await.unwrap();
            }
            5 => {
                tpm.random(48).await.unwrap();
            }
            6 => {
                tpm.certify_statement_key(vec![1; 16]).await.unwrap();
            }
            _ => {
                // A refused operation must not leak either.
                let err = tpm.quote(selection.clone(), vec![0; 65]).await;
                assert!(err.is_err());
            }
        }
        if i % 250 == 0 {
            assert_eq!(
                tpm.loaded_handles().await.unwrap(),
                0,
                "after {i} operations"
            );
        }
    }
    assert_eq!(tpm.loaded_handles().await.unwrap(), 0);
    // An outside view of the same TPM agrees.
    let transient = sw.tool_ok("tpm2_getcap", &["handles-transient"]);
    assert!(
        transient.trim().is_empty(),
        "transient handles left: {transient}"
    );
    // One loaded session: the policy session kept for signatures, flushed when the
    // connection closes.
    let sessions = sw.tool_ok("tpm2_getcap", &["handles-loaded-session"]);
    let loaded: Vec<&str> = sessions.lines().filter(|l| l.contains("0x")).collect();
    assert!(
        loaded.len() == 1 && loaded[0].contains("0x3"),
        "sessions left: {sessions}"
    );
    drop(tpm);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let sessions = sw.tool_ok("tpm2_getcap", &["handles-loaded-session"]);
        if sessions.trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sessions left after closing: {sessions}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test]
async fn opening_flushes_what_a_crashed_process_left() {
    let sw = TestTpm::start();
    // tpm2-tools leaves a started session in the TPM (context-saved) when it exits, as a
    // process that crashed between starting and flushing a session would.
    let session = sw.path("left.ctx").display().to_string();
    sw.tool_ok(
        "tpm2_startauthsession",
        &["--policy-session", "-S", &session],
    );
    let before = sw.tool_ok("tpm2_getcap", &["handles-saved-session"]);
    assert!(
        !before.trim().is_empty(),
        "the session is in the TPM: {before}"
    );
    let tpm = open(&sw);
    assert_eq!(tpm.loaded_handles().await.unwrap(), 0);
    let after = sw.tool_ok("tpm2_getcap", &["handles-saved-session"]);
    assert!(after.trim().is_empty(), "left after opening: {after}");
}

#[tokio::test]
async fn reading_the_eks_leaves_the_other_keys_usable() {
    let sw = TestTpm::start();
    let tpm = open(&sw);
    tpm.ensure_statement_key().await.unwrap();
    tpm.ensure_statement_key().await.unwrap();
    tpm.certify_statement_key(vec![1; 8])
        .await
        .expect("certify after ensure twice");
    tpm.endorsement_keys().await.unwrap();
    tpm.certify_statement_key(vec![1; 8])
        .await
        .expect("certify after eks");
    tpm.sign([1; 32]).await.unwrap();
    let q = tpm
        .quote(PcrSelection::new([23]).unwrap(), vec![2; 32])
        .await
        .unwrap();
    assert_eq!(q.pcrs.len(), 1);
    assert_eq!(tpm.loaded_handles().await.unwrap(), 0);
}

/// The descriptors of process `pid` above stderr that are sockets.
fn inherited_sockets(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) > Some(2))
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|target| target.display().to_string())
        .filter(|target| target.starts_with("socket:"))
        .collect()
}

/// The swtpm TCTI opens a socket per command without close-on-exec, and swtpm serves one
/// connection at a time: a child forked while a command is in flight would hold that
/// connection, and the TPM would answer no one until the child exits (the Keylime
/// quote flood's stall, docs/reliability.md). Children spawned through
/// `spawn_without_tpm` while commands run back to back hold no socket, and the TPM keeps
/// answering while they live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_spawned_during_tpm_commands_hold_no_tpm_connection() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    let sw = TestTpm::start();
    let tpm = open(&sw);
    let sel = PcrSelection::new([0, 23]).unwrap();
    let (running, commands) = (
        Arc::new(AtomicBool::new(true)),
        Arc::new(AtomicUsize::new(0)),
    );
    let busy = {
        let (tpm, sel, running, commands) = (
            tpm.clone(),
            sel.clone(),
            Arc::clone(&running),
            Arc::clone(&commands),
        );
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                tpm.pcr_read(sel.clone()).await.unwrap();
                commands.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // Children that outlive the test's TPM use, started while commands run back to back.
    let mut children = Vec::new();
    for _ in 0..40 {
        let mut sleep = std::process::Command::new("sleep");
        sleep.arg("30");
        children.push(arbiter_tests::spawn(&mut sleep).expect("sleep"));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let holding: Vec<_> = children
        .iter()
        .map(|c| (c.id(), inherited_sockets(c.id())))
        .filter(|(_, sockets)| !sockets.is_empty())
        .collect();
    // The TPM answers while every child lives.
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(5), tpm.pcr_read(sel.clone()))
            .await
            .expect("the TPM stalled: a child holds its connection")
            .unwrap();
        slowest = slowest.max(started.elapsed());
    }
    running.store(false, Ordering::Relaxed);
    busy.await.unwrap();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    println!(
        "40 children spawned during {} TPM commands; slowest command after: {slowest:?}",
        commands.load(Ordering::Relaxed)
    );
    assert!(
        holding.is_empty(),
        "children inherited sockets: {holding:?}"
    );
    assert!(
        commands.load(Ordering::Relaxed) > 40,
        "the commands ran beside the spawns"
    );
}
