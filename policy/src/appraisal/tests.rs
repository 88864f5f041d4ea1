//! Appraisal of whole evidence bundles built with software keys standing in for the TPM
//! (the same structures a TPM produces; `swtpm_fixtures` checks those against a real
//! one): a good bundle is trusted, and forged, truncated, replayed, stale and
//! mismatched evidence is refused with the right reasons — all of them at once.

use std::collections::{BTreeMap, BTreeSet};

use arbiter_measured_boot::HashAlg;
use arbiter_measured_boot::cel::{
    Base64Bytes, DaemonStarted, EventContent, FunctionLoaded, HexBytes, Id, InstanceCreated,
    InstanceDestroyed, Record, Sha256Digest, replay,
};
use arbiter_measured_boot::firmware::EventLog;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use serde_json::{Value, json};

use super::*;
use crate::Error;
use crate::evidence::{
    AkEvidence, BindingEvidence, BindingLeaf, Certification, Evidence, InstanceEvidence,
    QuoteEvidence, QuotedPcrs, SEALING_ATTRIBUTES, SealingEvidence, StatementKeyEvidence,
    sealing_policy, statement_key_policy,
};
use crate::manifest::manifest_sha256;
use crate::merkle;
use crate::tpm::hash::sha256;
use crate::tpm::{
    Attest, Attested, EcdsaSignature, NvAttributes, NvPublic, ObjectAttributes, PcrSelection,
    PcrValues, Public, TPM_ALG_SHA256, TPM_ST_ATTEST_CERTIFY, TPM_ST_ATTEST_NV,
    TPM_ST_ATTEST_QUOTE, pcr_digest,
};

const FUNCTION: &str = "579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63";
const INSTANCE: &str = "0123456789abcdef0123456789abcdef";
const NONCE: &str = "6e6f6e63652d6f662d7468652d7061727479";
const SB_LOG: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/eventlogs/sb_cert_eventlog.bin"
));
const NO_SB_LOG: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/testdata/eventlogs/crypto_agile_eventlog.bin"
));
/// Crafted (see `measured-boot/tests/fixtures/README.md`): sha1, sha256, sha384 and sha512
/// declared, sha1 and sha256 carried; `SecureBoot` = 1.
const FOUR_BANKS_LOG: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../measured-boot/tests/fixtures/agile_4_banks_sha1_sha256_carried.bin"
));
/// Crafted: sha1 and sha256 declared; the `SecureBoot` event (event 2, PCR 7) lacks sha256.
const SHA256_INCOMPLETE_LOG: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../measured-boot/tests/fixtures/agile_sha256_incomplete.bin"
));

fn spki() -> String {
    "5e".repeat(32)
}

fn party() -> String {
    "a".repeat(64)
}

fn manifest() -> Value {
    json!({
        "function": { "sha256": FUNCTION },
        "parties": [ { "name": "acme", "identity": party() } ],
        "slots": { "x": { "providers": [party()], "provide": "provide_once" } },
        "trigger": { "kind": "all" },
        "readers": { party(): "result" },
        "destruction": { "policy": "after_evaluation" }
    })
}

fn ak_attributes() -> ObjectAttributes {
    ObjectAttributes::FIXED_TPM
        | ObjectAttributes::FIXED_PARENT
        | ObjectAttributes::SENSITIVE_DATA_ORIGIN
        | ObjectAttributes::USER_WITH_AUTH
        | ObjectAttributes::RESTRICTED
        | ObjectAttributes::SIGN_ENCRYPT
}

fn stmt_attributes() -> ObjectAttributes {
    ObjectAttributes::FIXED_TPM
        | ObjectAttributes::FIXED_PARENT
        | ObjectAttributes::SENSITIVE_DATA_ORIGIN
        | ObjectAttributes::SIGN_ENCRYPT
}

/// `key`'s `TPMT_SIGNATURE` over SHA-256(`bytes`).
fn sign(key: &SigningKey, bytes: &[u8]) -> Vec<u8> {
    let sig: Signature = key.sign(bytes);
    EcdsaSignature::from_p256(&sig).marshal()
}

fn clock(reset_count: u32, restart_count: u32, clock: u64) -> ClockInfo {
    ClockInfo {
        clock,
        reset_count,
        restart_count,
        safe: true,
    }
}

/// The knobs of one simulated appliance and request.
struct World {
    ak: SigningKey,
    stmt: SigningKey,
    platform: Vec<u8>,
    platform_values: PcrValues,
    firmware_log: Option<Vec<u8>>,
    clock: ClockInfo,
    instance: bool,
    other_leaves: usize,
}

impl World {
    fn new() -> Self {
        let platform = vec![0, 2, 4, 7, 9];
        let platform_values = platform.iter().map(|&i| (i, [i + 1; 32])).collect();
        Self {
            ak: SigningKey::from_slice(&[0x5a; 32]).unwrap(),
            stmt: SigningKey::from_slice(&[0x33; 32]).unwrap(),
            platform,
            platform_values,
            firmware_log: None,
            clock: clock(3, 0, 1_000_000),
            instance: true,
            other_leaves: 2,
        }
    }

    /// Platform PCR values replayed from a real firmware log.
    fn with_firmware(mut self, log: &[u8]) -> Self {
        let banks = EventLog::from_bytes(log).unwrap().replay().unwrap();
        self.platform_values = self
            .platform
            .iter()
            .map(|&i| {
                let v = banks
                    .get(HashAlg::Sha256, u32::from(i))
                    .map_or([0u8; 32], |v| v.try_into().unwrap());
                (i, v)
            })
            .collect();
        self.firmware_log = Some(log.to_vec());
        self
    }

    fn ak_public(&self) -> Public {
        Public::p256_signing_key(self.ak.verifying_key(), ak_attributes(), &[]).unwrap()
    }

    fn selection(&self) -> PcrSelection {
        PcrSelection::new(self.platform.iter().copied()).unwrap()
    }

    fn stmt_public(&self) -> Public {
        let policy = statement_key_policy(&self.selection(), &self.platform_values).unwrap();
        Public::p256_signing_key(
            self.stmt.verifying_key(),
            stmt_attributes(),
            policy.as_bytes(),
        )
        .unwrap()
    }

    fn nv(&self) -> NvPublic {
        NvPublic {
            index: 0x0130_0023,
            name_alg: TPM_ALG_SHA256,
            attributes: SEALING_ATTRIBUTES,
            auth_policy: sealing_policy(&self.selection(), &self.platform_values)
                .unwrap()
                .as_bytes()
                .to_vec(),
            data_size: 40,
        }
    }

    fn instance_key(&self) -> [u8; 65] {
        crate::hpke::derive_keypair(&[0x77; 32]).1
    }

    /// The generation's first `daemon_started`.
    fn daemon_started(&self) -> DaemonStarted {
        let nv = self.nv();
        DaemonStarted {
            version: "0.1.0".into(),
            executable_sha256: Sha256Digest([0x5e; 32]),
            generation: 2,
            platform_pcrs: self.platform.iter().map(|&p| u32::from(p)).collect(),
            sealing_nv_public: Base64Bytes(nv.to_tpm2b()),
            sealing_nv_name: HexBytes(nv.name()),
            statement_key_name: HexBytes(self.stmt_public().name()),
            reset_count: self.clock.reset_count,
            restart_count: self.clock.restart_count,
            boot_id: "boot".into(),
        }
    }

    fn records(&self) -> Vec<Record> {
        let mut contents = vec![
            EventContent::DaemonStarted(self.daemon_started()),
            EventContent::FunctionLoaded(FunctionLoaded {
                function_id: Id([0x11; 16]),
                name: "concat".into(),
                sha256: Sha256Digest(hex::decode(FUNCTION).unwrap().try_into().unwrap()),
            }),
        ];
        if self.instance {
            contents.push(EventContent::InstanceCreated(InstanceCreated {
                instance_id: Id(hex::decode(INSTANCE).unwrap().try_into().unwrap()),
                manifest_sha256: Sha256Digest(manifest_sha256(&manifest())),
                public_key_sha256: Sha256Digest(sha256(&[&self.instance_key()])),
            }));
        }
        contents
            .into_iter()
            .enumerate()
            .map(|(i, c)| Record::new(i as u64, 23, c).unwrap())
            .collect()
    }

    fn leaf(&self) -> BindingLeaf {
        BindingLeaf {
            nonce: NONCE.into(),
            instance_id: self.instance.then(|| INSTANCE.to_owned()),
            tls_spki_sha256: spki(),
        }
    }

    fn expectations(&self) -> Expectations {
        Expectations {
            nonce: Some(NONCE.into()),
            tls_spki_sha256: Some(spki()),
            instance_id: self.instance.then(|| INSTANCE.to_owned()),
            same_startup_as: None,
        }
    }

    /// The AK pinned and the platform's reference values: PCR 0 as this world boots it
    /// (all-zero counts as no pin, so a world with no firmware allows an unpinned
    /// platform).
    fn policy(&self) -> AppraisalPolicy {
        let pcr0 = self.platform_values.get(&0).copied().unwrap_or_default();
        AppraisalPolicy {
            ak: PinnedAk {
                name: Some(self.ak_public().name()),
                public_key: None,
            },
            pcrs: [(0, BTreeSet::from([pcr0]))].into(),
            allow_unpinned_platform: pcr0 == [0; 32],
            ..AppraisalPolicy::default()
        }
    }

    fn quote(&self, extra_data: &[u8], pcrs: &PcrValues) -> Vec<u8> {
        let selection = PcrSelection::new(pcrs.keys().copied()).unwrap();
        Attest {
            attest_type: TPM_ST_ATTEST_QUOTE,
            qualified_signer: self.ak_public().name(),
            extra_data: extra_data.to_vec(),
            clock_info: self.clock,
            firmware_version: 0x2024,
            attested: Attested::Quote {
                selection: vec![(TPM_ALG_SHA256, selection.bitmap().to_vec())],
                pcr_digest: pcr_digest(pcrs).to_vec(),
            },
        }
        .marshal()
        .unwrap()
    }

    fn certify(&self, certified: &Public) -> Vec<u8> {
        Attest {
            attest_type: TPM_ST_ATTEST_CERTIFY,
            qualified_signer: self.ak_public().name(),
            extra_data: b"statement-key".to_vec(),
            clock_info: clock(1, 0, 5),
            firmware_version: 0x2024,
            attested: Attested::Certify {
                name: certified.name(),
                qualified_name: vec![0x00, 0x0b, 0x42],
            },
        }
        .marshal()
        .unwrap()
    }

    fn nv_certify(&self, contents: &[u8]) -> Vec<u8> {
        Attest {
            attest_type: TPM_ST_ATTEST_NV,
            qualified_signer: self.ak_public().name(),
            extra_data: vec![],
            clock_info: self.clock,
            firmware_version: 0x2024,
            attested: Attested::Nv {
                index_name: self.nv().name(),
                offset: 0,
                contents: contents.to_vec(),
            },
        }
        .marshal()
        .unwrap()
    }

    fn evidence(&self) -> Evidence {
        let records = self.records();
        let mut pcrs = self.platform_values.clone();
        pcrs.insert(23, replay(&records));
        let mut leaves: Vec<Vec<u8>> = (0..self.other_leaves)
            .map(|i| merkle::binding_leaf(&format!("{i:02x}"), None, &spki()))
            .collect();
        let index = leaves.len() / 2;
        leaves.insert(index, self.leaf().to_bytes());
        let root = merkle::root(&leaves);
        let proof = merkle::inclusion_proof(&leaves, index).unwrap();
        let attest = self.quote(&root, &pcrs);
        let ak = self.ak_public();
        let stmt = self.stmt_public();
        let cert = self.certify(&stmt);
        let nv = self.nv();
        Evidence {
            quote: QuoteEvidence {
                signature: Base64Bytes(sign(&self.ak, &attest)),
                attest: Base64Bytes(attest),
                pcrs: QuotedPcrs {
                    sha256: pcrs.iter().map(|(i, v)| (*i, Sha256Digest(*v))).collect(),
                },
            },
            ak: AkEvidence {
                public_pem: ak.public_key_pem().unwrap(),
                tpm2b_public: Base64Bytes(ak.to_tpm2b()),
                name: HexBytes(ak.name()),
            },
            statement_key: Some(StatementKeyEvidence {
                tpm2b_public: Base64Bytes(stmt.to_tpm2b()),
                signature: Base64Bytes(sign(&self.ak, &cert)),
                attest: Base64Bytes(cert),
                name: Some(HexBytes(stmt.name())),
            }),
            binding: BindingEvidence {
                leaf: self.leaf(),
                leaf_index: index as u64,
                tree_size: leaves.len() as u64,
                proof: proof.into_iter().map(Sha256Digest).collect(),
                root: Sha256Digest(root),
            },
            sealing: SealingEvidence {
                nv_public: Base64Bytes(nv.to_tpm2b()),
                name: HexBytes(nv.name()),
                epoch: 5,
                certify: None,
            },
            log_generation: Some(2),
            log: records,
            firmware_log: self.firmware_log.clone().map(Base64Bytes),
            instance: self.instance.then(|| InstanceEvidence {
                instance_id: INSTANCE.into(),
                public_key: HexBytes(self.instance_key().to_vec()),
                manifest_sha256: Sha256Digest(manifest_sha256(&manifest())),
                manifest: Some(manifest()),
            }),
        }
    }

    /// Re-signs the quote (after a test changed it) with `key`.
    fn resign_quote(&self, e: &mut Evidence, key: &SigningKey) {
        e.quote.signature = Base64Bytes(sign(key, &e.quote.attest.0));
    }

    /// The evidence with `contents` as its log (numbered from 0), the application PCR
    /// extended with them and the quote re-made and signed by the AK: a log the daemon
    /// could have written.
    fn evidence_with_log(&self, contents: Vec<EventContent>) -> Evidence {
        let mut e = self.evidence();
        e.log = contents
            .into_iter()
            .enumerate()
            .map(|(i, c)| Record::new(i as u64, 23, c).unwrap())
            .collect();
        let value = replay(&e.log);
        e.quote.pcrs.sha256.insert(23, Sha256Digest(value));
        e.quote.attest = Base64Bytes(self.quote(&e.binding.root.0, &e.quote.pcr_values()));
        self.resign_quote(&mut e, &self.ak);
        e
    }

    /// A log of three daemon starts (0.1.0, 0.1.1, 0.2.0 with executables `0x5e..`,
    /// `0x61..`, `0x62..`) with the function and the instance between them, each later
    /// start changed by `later`.
    fn restarted_log(&self, later: impl Fn(&mut DaemonStarted)) -> Vec<EventContent> {
        let records = self.records();
        let start = |version: &str, exe: u8| {
            let mut ds = self.daemon_started();
            ds.version = version.into();
            ds.executable_sha256 = Sha256Digest([exe; 32]);
            later(&mut ds);
            EventContent::DaemonStarted(ds)
        };
        vec![
            records[0].content.clone(),
            records[1].content.clone(),
            start("0.1.1", 0x61),
            records[2].content.clone(),
            start("0.2.0", 0x62),
        ]
    }
}

fn checks(verdict: &Verdict) -> Vec<Check> {
    verdict.reasons.iter().map(|r| r.check).collect()
}

/// Asserts that `verdict` is refused for exactly the `expected` checks (in any order,
/// each at least once) and shows the reasons when it is not.
fn refused_for(verdict: &Verdict, expected: &[Check]) {
    assert!(!verdict.trusted, "trusted: {verdict:#?}");
    let found: BTreeSet<Check> = checks(verdict).into_iter().collect();
    let wanted: BTreeSet<Check> = expected.iter().copied().collect();
    let text: Vec<String> = verdict.reasons.iter().map(ToString::to_string).collect();
    assert_eq!(found, wanted, "{text:#?}");
}

#[test]
fn a_good_bundle_is_trusted_and_fresh() {
    let w = World::new();
    let evidence = w.evidence();
    let verdict = appraise(&evidence, &w.policy(), &w.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    assert!(verdict.reasons.is_empty());
    assert!(verdict.fresh);
    assert_eq!(verdict.as_of, Some(w.clock));
    let a = &verdict.appraised;
    assert_eq!(a.ak_name.as_deref(), Some(w.ak_public().name().as_slice()));
    assert_eq!(a.log_generation, Some(2));
    assert_eq!(a.platform_pcrs, Some(w.selection()));
    assert_eq!(a.sealing_epoch, 5);
    let function: [u8; 32] = hex::decode(FUNCTION).unwrap().try_into().unwrap();
    assert_eq!(a.functions, vec![function]);
    assert_eq!(a.function_sha256, Some(a.functions[0]));
    assert_eq!(a.manifest_sha256, Some(manifest_sha256(&manifest())));
    assert_eq!(verdict.statement_key(), Some(&w.stmt_public()));
    assert_eq!(verdict.instance_public_key(), Some(&w.instance_key()));
    assert_eq!(a.daemon_version.as_deref(), Some("0.1.0"));
    assert_eq!(a.daemon_executable_sha256, Some([0x5e; 32]));
    assert_eq!(a.daemon_starts, 1);
    // The bundle survives JSON (what the daemon sends), and so does the verdict.
    let json = serde_json::to_vec(&evidence).unwrap();
    let parsed = Evidence::from_json(&json).unwrap();
    assert_eq!(parsed, evidence);
    assert_eq!(appraise(&parsed, &w.policy(), &w.expectations()), verdict);
}

#[test]
fn the_daemon_response_shape_parses() {
    // The attestation response as the daemon builds it (extra fields included), with the
    // statement key from GET /v1/tpm added.
    let w = World::new();
    let e = w.evidence();
    let mut v = serde_json::to_value(&e).unwrap();
    assert!(v["quote"]["pcrs"]["sha256"]["23"].is_string());
    assert_eq!(v["instance"]["id"], INSTANCE);
    v["instance"]["state"] = json!("open");
    v["instance"]["hpke_suite"] = json!(crate::hpke::SUITE);
    v["statement_key"]["qualifying_data"] = json!("YXJiaXRlci92MS9zdGF0ZW1lbnQta2V5");
    v["statement_key"]["public_pem"] = json!("-----BEGIN PUBLIC KEY-----");
    let parsed = Evidence::from_value(v.clone()).unwrap();
    assert_eq!(parsed, e);
    // `instance_id` is accepted for `id`.
    let id = v["instance"].as_object_mut().unwrap().remove("id").unwrap();
    v["instance"]["instance_id"] = id;
    assert_eq!(Evidence::from_value(v.clone()).unwrap(), e);
    // Without statement_key and log_generation it still parses.
    v.as_object_mut().unwrap().remove("statement_key");
    v.as_object_mut().unwrap().remove("log_generation");
    let bare = Evidence::from_value(v).unwrap();
    assert_eq!(bare.statement_key, None);
    assert!(matches!(
        Evidence::from_value(json!({"quote": 1})),
        Err(Error::Evidence { .. })
    ));
}

#[test]
fn pinning_by_public_key_and_without_an_instance() {
    let mut w = World::new();
    w.instance = false;
    w.other_leaves = 0;
    let policy = AppraisalPolicy {
        ak: PinnedAk {
            name: None,
            public_key: Some(*w.ak.verifying_key()),
        },
        pcrs: w.policy().pcrs,
        ..AppraisalPolicy::default()
    };
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    assert_eq!(verdict.instance_public_key(), None);
    // A one-leaf tree: the root is the leaf hash.
    let e = w.evidence();
    assert_eq!(e.binding.root.0, merkle::leaf_hash(&w.leaf().to_bytes()));
}

#[test]
fn offline_bundles_are_trusted_only_as_of_the_tpm_clock() {
    let w = World::new();
    let verdict = appraise(&w.evidence(), &w.policy(), &Expectations::default());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    assert!(!verdict.fresh);
    assert_eq!(verdict.as_of, Some(w.clock));
}

#[test]
fn an_unpinned_or_other_ak_is_refused() {
    let w = World::new();
    let verdict = appraise(
        &w.evidence(),
        &AppraisalPolicy::default(),
        &w.expectations(),
    );
    refused_for(&verdict, &[Check::AkPin, Check::ReferenceValues]);
    assert_eq!(
        verdict.statement_key(),
        None,
        "keys only from trusted verdicts"
    );
    let other = SigningKey::from_slice(&[0x66; 32]).unwrap();
    let policy = AppraisalPolicy {
        ak: PinnedAk {
            name: Some(
                Public::p256_signing_key(other.verifying_key(), ak_attributes(), &[])
                    .unwrap()
                    .name(),
            ),
            public_key: Some(*other.verifying_key()),
        },
        pcrs: w.policy().pcrs,
        ..AppraisalPolicy::default()
    };
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    refused_for(&verdict, &[Check::AkPin]);
    assert_eq!(verdict.reasons.len(), 2, "name and key both differ");
}

#[test]
fn a_forged_quote_is_refused() {
    let w = World::new();
    let forger = SigningKey::from_slice(&[0x66; 32]).unwrap();
    let mut e = w.evidence();
    w.resign_quote(&mut e, &forger);
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::Quote]);
    assert!(
        verdict.reasons[0]
            .detail
            .contains("signature does not verify")
    );
    assert!(!verdict.fresh);
    assert_eq!(verdict.as_of, None, "no clock from an unverified quote");

    // A forger who swaps in its own AK is caught by the pin.
    let mut forged = World::new();
    forged.ak = forger;
    let verdict = appraise(&forged.evidence(), &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::AkPin]);

    // The quoted PCR values changed after signing.
    let mut e = w.evidence();
    e.quote.pcrs.sha256.insert(7, Sha256Digest([0xee; 32]));
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    assert!(verdict.failed(Check::Quote));
    assert!(
        verdict
            .reasons
            .iter()
            .any(|r| r.detail.contains("PCR digest"))
    );
    // ...which also breaks the statement key's and sealing index's policies.
    assert!(verdict.failed(Check::StatementKey) && verdict.failed(Check::Sealing));
}

#[test]
fn truncated_evidence_is_refused() {
    let w = World::new();
    let mut e = w.evidence();
    e.quote.attest.0.pop();
    w.resign_quote(&mut e, &w.ak);
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::Quote]);
    assert!(
        verdict.reasons[0].detail.contains("truncated"),
        "{:?}",
        verdict.reasons
    );

    let mut e = w.evidence();
    e.quote.signature.0.truncate(40);
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::Quote],
    );

    let mut e = w.evidence();
    e.ak.tpm2b_public.0.truncate(20);
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(
        &verdict,
        &[
            Check::AkKey,
            Check::AkPin,
            Check::Quote,
            Check::StatementKey,
        ],
    );

    let mut e = w.evidence();
    e.sealing.nv_public.0.pop();
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::Sealing],
    );

    let mut e = w.evidence();
    e.statement_key.as_mut().unwrap().attest.0.truncate(10);
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::StatementKey],
    );

    let mut e = w.evidence();
    e.binding.proof.pop();
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::Binding],
    );

    // A record cut from the log.
    let mut e = w.evidence();
    e.log.pop();
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::Log, Check::Instance]);

    // Malformed JSON never gets as far as a verdict.
    let json = serde_json::to_string(&w.evidence()).unwrap();
    assert!(matches!(
        Evidence::from_json(&json.as_bytes()[..json.len() / 2]),
        Err(Error::Evidence { .. })
    ));
}

#[test]
fn a_replayed_quote_is_refused() {
    let w = World::new();
    let e = w.evidence();
    // Another verifier's nonce.
    let mut x = w.expectations();
    x.nonce = Some("00112233".into());
    let verdict = appraise(&e, &w.policy(), &x);
    refused_for(&verdict, &[Check::Binding]);
    assert!(verdict.reasons[0].detail.contains("replayed"));
    assert!(!verdict.fresh);
    // Presented over another TLS connection (a relay).
    let mut x = w.expectations();
    x.tls_spki_sha256 = Some("00".repeat(32));
    refused_for(&appraise(&e, &w.policy(), &x), &[Check::Binding]);
    // For another instance.
    let mut x = w.expectations();
    x.instance_id = Some("f".repeat(32));
    refused_for(
        &appraise(&e, &w.policy(), &x),
        &[Check::Binding, Check::Instance],
    );
    // Our leaf swapped in, with the quote and proof of another request: the proof no
    // longer leads to the root.
    let mut e = w.evidence();
    e.binding.leaf.nonce = "ff".into();
    let mut x = w.expectations();
    x.nonce = Some("ff".into());
    refused_for(&appraise(&e, &w.policy(), &x), &[Check::Binding]);
    // A quote over another root (e.g. an earlier tree) with a consistent proof.
    let mut e = w.evidence();
    let root = merkle::leaf_hash(&w.leaf().to_bytes());
    e.binding = BindingEvidence {
        leaf: w.leaf(),
        leaf_index: 0,
        tree_size: 1,
        proof: vec![],
        root: Sha256Digest(root),
    };
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::Quote]);
    assert!(verdict.reasons[0].detail.contains("qualifying data"));
}

#[test]
fn tpm_startups_are_compared() {
    let w = World::new();
    // The same startup as an earlier quote: fine.
    let mut x = w.expectations();
    x.same_startup_as = Some(clock(3, 0, 10));
    assert!(appraise(&w.evidence(), &w.policy(), &x).trusted);
    // After a reboot, or a resume, or with a clock that went backwards: refused.
    for earlier in [clock(2, 0, 10), clock(3, 1, 10), clock(3, 0, 2_000_000)] {
        x.same_startup_as = Some(earlier);
        refused_for(&appraise(&w.evidence(), &w.policy(), &x), &[Check::Startup]);
    }
    // A log whose generation began at another TPM startup (a restored log).
    let mut stale = World::new();
    stale.clock = clock(2, 0, 5);
    let mut e = stale.evidence();
    let fresh_quote = World::new();
    let mut pcrs = e.quote.pcr_values();
    pcrs.insert(23, replay(&e.log));
    e.quote.attest = Base64Bytes(fresh_quote.quote(&e.binding.root.0, &pcrs));
    w.resign_quote(&mut e, &w.ak);
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::Startup],
    );
}

#[test]
fn measurement_log_tampering_is_refused() {
    let w = World::new();
    // The daemon reports another generation than the log's.
    let mut e = w.evidence();
    e.log_generation = Some(3);
    refused_for(&appraise(&e, &w.policy(), &w.expectations()), &[Check::Log]);
    // A record's content changed (its digest no longer matches).
    let mut e = w.evidence();
    if let EventContent::FunctionLoaded(f) = &mut e.log[1].content {
        f.sha256 = Sha256Digest([0xab; 32]);
    }
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    assert!(verdict.failed(Check::Log));
    // A record recomputed correctly but not extended: replay differs from the PCR.
    let mut e = w.evidence();
    let extra = EventContent::InstanceDestroyed(InstanceDestroyed {
        instance_id: Id([0x22; 16]),
        epoch_retired: 4,
    });
    let n = e.log.len() as u64;
    e.log.push(Record::new(n, 23, extra).unwrap());
    refused_for(&appraise(&e, &w.policy(), &w.expectations()), &[Check::Log]);
    // The application PCR left out of the quote.
    let mut e = w.evidence();
    e.quote.pcrs.sha256.remove(&23);
    let mut pcrs = e.quote.pcr_values();
    e.quote.attest = Base64Bytes(w.quote(&e.binding.root.0, &pcrs));
    w.resign_quote(&mut e, &w.ak);
    refused_for(&appraise(&e, &w.policy(), &w.expectations()), &[Check::Log]);
    pcrs.clear();
    // The log does not start with daemon_started.
    let mut e = w.evidence();
    e.log.remove(0);
    for (i, r) in e.log.iter_mut().enumerate() {
        r.recnum = i as u64;
    }
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    assert!(verdict.failed(Check::Log));
    assert!(
        verdict
            .reasons
            .iter()
            .any(|r| r.detail.contains("not daemon_started"))
    );
}

#[test]
fn instance_checks() {
    let w = World::new();
    // A public key that is not the measured one (a substituted key).
    let mut e = w.evidence();
    e.instance.as_mut().unwrap().public_key =
        HexBytes(crate::hpke::derive_keypair(&[1; 32]).1.to_vec());
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::Instance]);
    assert_eq!(verdict.instance_public_key(), None);
    // A manifest other than the measured one.
    let mut e = w.evidence();
    let mut other = manifest();
    other["rounds"] = json!(2);
    e.instance.as_mut().unwrap().manifest = Some(other);
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::Manifest],
    );
    // The policy pins another manifest.
    let mut policy = w.policy();
    policy.manifest_sha256 = Some([0x42; 32]);
    refused_for(
        &appraise(&w.evidence(), &policy, &w.expectations()),
        &[Check::Manifest],
    );
    policy.manifest_sha256 = Some(manifest_sha256(&manifest()));
    assert!(appraise(&w.evidence(), &policy, &w.expectations()).trusted);
    // Destroyed instances are not attested as live.
    let mut e = w.evidence();
    let n = e.log.len() as u64;
    e.log.push(
        Record::new(
            n,
            23,
            EventContent::InstanceDestroyed(InstanceDestroyed {
                instance_id: Id(hex::decode(INSTANCE).unwrap().try_into().unwrap()),
                epoch_retired: 5,
            }),
        )
        .unwrap(),
    );
    let mut pcrs = e.quote.pcr_values();
    pcrs.insert(23, replay(&e.log));
    e.quote.pcrs.sha256.insert(23, Sha256Digest(replay(&e.log)));
    e.quote.attest = Base64Bytes(w.quote(&e.binding.root.0, &pcrs));
    w.resign_quote(&mut e, &w.ak);
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::Instance]);
    assert!(verdict.reasons[0].detail.contains("destroyed"));
    // The evidence describes no instance although one was asked about.
    let mut e = w.evidence();
    e.instance = None;
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::Instance, Check::Binding],
    );
}

#[test]
fn function_policy() {
    let w = World::new();
    let mut policy = w.policy();
    policy
        .functions
        .insert(hex::decode(FUNCTION).unwrap().try_into().unwrap());
    policy.only_listed_functions = true;
    assert!(appraise(&w.evidence(), &policy, &w.expectations()).trusted);
    // Required but not loaded; and the instance's function not in the list.
    let mut policy = w.policy();
    policy.functions.insert([0x12; 32]);
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    refused_for(&verdict, &[Check::Function]);
    assert_eq!(verdict.reasons.len(), 2);
    // Loaded but not listed.
    policy.only_listed_functions = true;
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    assert_eq!(verdict.reasons.len(), 3);
}

#[test]
fn statement_key_and_sealing_index_checks() {
    let w = World::new();
    // A statement key whose policy was computed for other PCR values.
    let mut e = w.evidence();
    let mut other = World::new();
    other.platform_values.insert(0, [0xaa; 32]);
    let stmt = other.stmt_public();
    e.statement_key.as_mut().unwrap().tpm2b_public = Base64Bytes(stmt.to_tpm2b());
    let cert = w.certify(&stmt);
    e.statement_key.as_mut().unwrap().signature = Base64Bytes(sign(&w.ak, &cert));
    e.statement_key.as_mut().unwrap().attest = Base64Bytes(cert);
    e.statement_key.as_mut().unwrap().name = Some(HexBytes(stmt.name()));
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::StatementKey]);
    // both the measured name and the policy differ
    assert_eq!(verdict.reasons.len(), 2, "{:#?}", verdict.reasons);
    // A reported name that is not the key's.
    let mut e = w.evidence();
    e.statement_key.as_mut().unwrap().name = Some(HexBytes(vec![0, 0x0b, 1]));
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::StatementKey],
    );
    // No statement key at all.
    let mut e = w.evidence();
    e.statement_key = None;
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::StatementKey]);
    assert_eq!(verdict.statement_key(), None);
    // A certification signed by another key.
    let mut e = w.evidence();
    let forger = SigningKey::from_slice(&[0x66; 32]).unwrap();
    let cert = e.statement_key.as_ref().unwrap().attest.0.clone();
    e.statement_key.as_mut().unwrap().signature = Base64Bytes(sign(&forger, &cert));
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::StatementKey],
    );
    // A sealing index readable by the owner, published consistently everywhere.
    let mut e = w.evidence();
    let mut nv = w.nv();
    nv.attributes = SEALING_ATTRIBUTES | NvAttributes::OWNERREAD;
    e.sealing.nv_public = Base64Bytes(nv.to_tpm2b());
    e.sealing.name = HexBytes(nv.name());
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::Sealing]);
    assert!(
        verdict
            .reasons
            .iter()
            .any(|r| r.detail.contains("attributes"))
    );
    // An NV certification: without contents it is fine; revealing contents is not; by
    // another key it fails.
    let mut e = w.evidence();
    let attest = w.nv_certify(&[]);
    e.sealing.certify = Some(Certification {
        signature: Base64Bytes(sign(&w.ak, &attest)),
        attest: Base64Bytes(attest),
    });
    assert!(appraise(&e, &w.policy(), &w.expectations()).trusted);
    let attest = w.nv_certify(&[0u8; 40]);
    e.sealing.certify = Some(Certification {
        signature: Base64Bytes(sign(&w.ak, &attest)),
        attest: Base64Bytes(attest.clone()),
    });
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::Sealing],
    );
    e.sealing.certify = Some(Certification {
        signature: Base64Bytes(sign(&forger, &attest)),
        attest: Base64Bytes(attest),
    });
    refused_for(
        &appraise(&e, &w.policy(), &w.expectations()),
        &[Check::Sealing],
    );
}

#[test]
fn platform_pcr_sets() {
    let mut weak = World::new();
    weak.platform = vec![0, 2, 4];
    weak.platform_values = [0u8, 2, 4].into_iter().map(|i| (i, [i; 32])).collect();
    let verdict = appraise(&weak.evidence(), &weak.policy(), &weak.expectations());
    refused_for(&verdict, &[Check::PlatformPcrs]);
    let mut policy = weak.policy();
    policy.allow_weak_platform_pcrs = true;
    assert!(appraise(&weak.evidence(), &policy, &weak.expectations()).trusted);
    let w = World::new();
    let mut policy = w.policy();
    policy.platform_pcrs = Some(PcrSelection::new([0, 2, 4, 7]).unwrap());
    refused_for(
        &appraise(&w.evidence(), &policy, &w.expectations()),
        &[Check::PlatformPcrs],
    );
}

#[test]
fn pcr_policy_values() {
    let w = World::new();
    let mut policy = w.policy();
    policy.pcrs.insert(0, [[1u8; 32]].into());
    policy.pcrs.insert(7, [[9u8; 32], [8u8; 32]].into());
    assert!(appraise(&w.evidence(), &policy, &w.expectations()).trusted);
    policy.pcrs.insert(2, [[0u8; 32]].into());
    policy.pcrs.insert(14, [[0u8; 32]].into());
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    refused_for(&verdict, &[Check::Pcr]);
    assert_eq!(verdict.reasons.len(), 2, "{:#?}", verdict.reasons);
}

#[test]
fn every_reason_is_listed_not_just_the_first() {
    let w = World::new();
    let mut e = w.evidence();
    e.quote.pcrs.sha256.insert(7, Sha256Digest([0xee; 32]));
    e.instance.as_mut().unwrap().public_key = HexBytes(vec![4; 65]);
    let mut policy = AppraisalPolicy::default();
    policy.pcrs.insert(0, [[0u8; 32]].into());
    policy.functions.insert([0x12; 32]);
    let mut x = w.expectations();
    x.nonce = Some("00".into());
    let verdict = appraise(&e, &policy, &x);
    refused_for(
        &verdict,
        &[
            Check::AkPin,
            Check::Binding,
            Check::Quote,
            Check::Pcr,
            Check::StatementKey,
            Check::Sealing,
            Check::Function,
            Check::Instance,
            Check::ReferenceValues,
        ],
    );
    for reason in &verdict.reasons {
        assert!(!reason.detail.is_empty());
        assert!(reason.to_string().contains(": "));
    }
}

#[test]
fn firmware_log_rules() {
    let w = World::new().with_firmware(SB_LOG);
    let apps: BTreeSet<[u8; 32]> = [
        "007f4c95125713b112093e21663e2d23e3c1ae9ce4b5de0d58a297332336a2d8",
        "111086387ba16d1a659968831045f7c7489f9440f095407d6cd54ab246a933c5",
        "5df7ee46563159c628c26b57d623571bdd8d51d22bc7ac2935ba91b021ff175e",
    ]
    .iter()
    .map(|h| hex::decode(h).unwrap().try_into().unwrap())
    .collect();
    let mut policy = w.policy();
    policy.firmware = Some(FirmwareRules {
        secure_boot: true,
        boot_applications: Some(apps.clone()),
    });
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    assert_eq!(verdict.appraised.secure_boot, Some(true));

    // One boot application not allowed.
    let mut fewer = apps.clone();
    fewer.pop_first();
    policy.firmware = Some(FirmwareRules {
        secure_boot: true,
        boot_applications: Some(fewer),
    });
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    refused_for(&verdict, &[Check::BootApplication]);
    assert_eq!(verdict.reasons.len(), 1);

    // The log does not match the quoted PCRs (e.g. another machine's log).
    let mut e = w.evidence();
    e.firmware_log = Some(Base64Bytes(NO_SB_LOG.to_vec()));
    policy.firmware = Some(FirmwareRules {
        secure_boot: true,
        boot_applications: Some(apps.clone()),
    });
    let verdict = appraise(&e, &policy, &w.expectations());
    assert!(verdict.failed(Check::FirmwareLog));
    assert!(verdict.failed(Check::SecureBoot));
    assert!(verdict.failed(Check::BootApplication));

    // A machine with Secure Boot off.
    let off = World::new().with_firmware(NO_SB_LOG);
    let mut policy = off.policy();
    policy.firmware = Some(FirmwareRules {
        secure_boot: true,
        boot_applications: None,
    });
    let verdict = appraise(&off.evidence(), &policy, &off.expectations());
    refused_for(&verdict, &[Check::SecureBoot]);
    assert!(verdict.reasons[0].detail.contains("disabled"));
    assert_eq!(verdict.appraised.secure_boot, Some(false));

    // Rules but no log; a log that does not parse.
    policy.pcrs = w.policy().pcrs;
    let mut e = w.evidence();
    e.firmware_log = None;
    refused_for(
        &appraise(&e, &policy, &w.expectations()),
        &[Check::FirmwareLog],
    );
    e.firmware_log = Some(Base64Bytes(SB_LOG[..100].to_vec()));
    refused_for(
        &appraise(&e, &policy, &w.expectations()),
        &[Check::FirmwareLog],
    );
    // Without firmware rules the log is not required.
    let mut e = w.evidence();
    e.firmware_log = None;
    assert!(appraise(&e, &w.policy(), &w.expectations()).trusted);
}

#[test]
fn only_complete_firmware_banks_are_appraised() {
    let rules = Some(FirmwareRules {
        secure_boot: true,
        boot_applications: None,
    });
    // sha384 and sha512 declared but carried by no event: the log is appraised on its
    // complete SHA-256 bank.
    let w = World::new().with_firmware(FOUR_BANKS_LOG);
    let mut policy = w.policy();
    policy.firmware = rules.clone();
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    assert_eq!(verdict.appraised.secure_boot, Some(true));

    // One event lacks its SHA-256 digest. The quote holds exactly what replaying the SHA-256
    // digests that are there gives, and the SHA-1 bank is complete: refused all the same,
    // naming the bank, and nothing is read from the log.
    let log = EventLog::from_bytes(SHA256_INCOMPLETE_LOG).unwrap();
    let mut partial: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    for e in log.events.iter().filter(|e| e.is_extended()) {
        if let Some(d) = e.digest(HashAlg::Sha256) {
            let pcr = partial
                .entry(u8::try_from(e.pcr).unwrap())
                .or_insert_with(|| vec![0; 32]);
            assert!(HashAlg::Sha256.extend(pcr, d));
        }
    }
    assert_ne!(
        partial[&7], [0u8; 32],
        "PCR 7 has an event with a SHA-256 digest"
    );
    let mut w = World::new();
    w.platform_values = w
        .platform
        .iter()
        .map(|&i| {
            (
                i,
                partial
                    .get(&i)
                    .map_or([0; 32], |v| v.clone().try_into().unwrap()),
            )
        })
        .collect();
    w.firmware_log = Some(SHA256_INCOMPLETE_LOG.to_vec());
    let mut policy = w.policy();
    policy.firmware = rules;
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    let detail = only_reason(&verdict, Check::FirmwareLog);
    assert_eq!(
        detail,
        "sha256: incomplete (event 2, PCR 7, has no sha256 digest; 1 of 11 events lack it); \
         only complete banks are appraised, and no other bank (not SHA-1) stands in for the \
         quoted SHA-256 bank"
    );
    assert_eq!(verdict.appraised.secure_boot, None);
}

/// A change to a `daemon_started` record.
type Change<'a> = Box<dyn Fn(&mut DaemonStarted) + 'a>;

/// The detail of the only reason of `verdict`, which must come from `check`.
fn only_reason(verdict: &Verdict, check: Check) -> &str {
    refused_for(verdict, &[check]);
    assert_eq!(verdict.reasons.len(), 1, "{:#?}", verdict.reasons);
    &verdict.reasons[0].detail
}

#[test]
fn several_daemon_starts_in_one_generation_are_trusted_and_the_last_is_reported() {
    let w = World::new();
    let e = w.evidence_with_log(w.restarted_log(|_| {}));
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    let a = &verdict.appraised;
    assert_eq!(a.daemon_starts, 3);
    assert_eq!(a.daemon_version.as_deref(), Some("0.2.0"));
    assert_eq!(a.daemon_executable_sha256, Some([0x62; 32]));
    // The generation, platform set, statement key and instance still come through.
    assert_eq!(a.log_generation, Some(2));
    assert_eq!(a.platform_pcrs, Some(w.selection()));
    assert_eq!(verdict.statement_key(), Some(&w.stmt_public()));
    assert_eq!(verdict.instance_public_key(), Some(&w.instance_key()));
    assert_eq!(a.functions.len(), 1);
}

#[test]
fn a_later_daemon_start_that_disagrees_with_the_first_is_refused() {
    let w = World::new();
    // Another appliance state: another statement key, other platform values (so another
    // sealing policy and index name).
    let mut other = World::new();
    other.stmt = SigningKey::from_slice(&[0x44; 32]).unwrap();
    other.platform_values.insert(0, [0xaa; 32]);
    let mutations: [(&str, Change<'_>); 6] = [
        ("generation", Box::new(|d| d.generation = 3)),
        (
            "platform_pcrs",
            Box::new(|d| d.platform_pcrs = vec![0, 2, 4, 7]),
        ),
        (
            "sealing_nv_public",
            Box::new(|d| d.sealing_nv_public = Base64Bytes(other.nv().to_tpm2b())),
        ),
        (
            "sealing_nv_name",
            Box::new(|d| d.sealing_nv_name = HexBytes(other.nv().name())),
        ),
        (
            "statement_key_name",
            Box::new(|d| d.statement_key_name = HexBytes(other.stmt_public().name())),
        ),
        ("boot_id", Box::new(|d| d.boot_id = "another boot".into())),
    ];
    for (field, mutate) in mutations {
        // Only the last start differs: one reason, naming that record and the field.
        let mut log = w.restarted_log(|_| {});
        if let EventContent::DaemonStarted(ds) = &mut log[4] {
            mutate(ds);
        }
        let e = w.evidence_with_log(log);
        let verdict = appraise(&e, &w.policy(), &w.expectations());
        let detail = only_reason(&verdict, Check::Log);
        assert!(
            detail.starts_with(&format!("daemon_started record 4 (recnum 4) has {field} ")),
            "{field}: {detail}"
        );
        assert!(
            detail.contains("the log's first daemon_started"),
            "{detail}"
        );
        // Both later starts differ: one reason each.
        let e = w.evidence_with_log(w.restarted_log(&mutate));
        let verdict = appraise(&e, &w.policy(), &w.expectations());
        refused_for(&verdict, &[Check::Log]);
        assert_eq!(verdict.reasons.len(), 2, "{field}: {:#?}", verdict.reasons);
        assert!(verdict.reasons[0].detail.contains("(recnum 2)"));
        assert!(verdict.reasons[1].detail.contains("(recnum 4)"));
    }
    // Several fields of one record: one reason per field.
    let e = w.evidence_with_log(w.restarted_log(|d| {
        d.generation = 9;
        d.boot_id = "x".into();
    }));
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::Log]);
    assert_eq!(verdict.reasons.len(), 4, "{:#?}", verdict.reasons);
    // A daemon_started later in the log does not stand in for a missing first one.
    let mut log = w.restarted_log(|_| {});
    log.remove(0);
    let verdict = appraise(&w.evidence_with_log(log), &w.policy(), &w.expectations());
    assert!(verdict.failed(Check::Log));
    assert!(
        verdict.reasons.iter().any(|r| r
            .detail
            .contains("first record is function_loaded, not daemon_started")),
        "{:#?}",
        verdict.reasons
    );
}

#[test]
fn a_later_daemon_start_from_another_tpm_startup_is_refused() {
    let w = World::new();
    let changes: [(Change<'_>, &str); 2] = [
        (Box::new(|d| d.reset_count += 1), "reset/restart 4/0"),
        (Box::new(|d| d.restart_count += 1), "reset/restart 3/1"),
    ];
    for (change, counts) in changes {
        let mut log = w.restarted_log(|_| {});
        if let EventContent::DaemonStarted(ds) = &mut log[2] {
            change(ds);
        }
        let e = w.evidence_with_log(log);
        let verdict = appraise(&e, &w.policy(), &w.expectations());
        let detail = only_reason(&verdict, Check::Startup);
        assert!(
            detail.starts_with("daemon_started record 2 (recnum 2) names TPM ")
                && detail.contains(counts)
                && detail.contains("the quote is from 3/0"),
            "{detail}"
        );
    }
    // Without a verified quote the counts are still compared with the first record's.
    let mut log = w.restarted_log(|_| {});
    if let EventContent::DaemonStarted(ds) = &mut log[4] {
        ds.reset_count = 7;
    }
    let mut e = w.evidence_with_log(log);
    w.resign_quote(&mut e, &SigningKey::from_slice(&[0x66; 32]).unwrap());
    let verdict = appraise(&e, &w.policy(), &w.expectations());
    refused_for(&verdict, &[Check::Quote, Check::Log]);
    assert!(
        verdict.reasons.iter().any(|r| r.check == Check::Log
            && r.detail
                == "daemon_started record 4 (recnum 4) has reset_count 7, the log's first daemon_started has 3"),
        "{:#?}",
        verdict.reasons
    );
}

#[test]
fn pinned_executables_are_checked_for_every_daemon_start() {
    let w = World::new();
    let e = w.evidence_with_log(w.restarted_log(|_| {}));
    // Only the running daemon's executable allowed: the two earlier starts are refused,
    // each by name and digest.
    let mut policy = w.policy();
    policy.executable_sha256 = Some([[0x62; 32]].into());
    let verdict = appraise(&e, &policy, &w.expectations());
    refused_for(&verdict, &[Check::Executable]);
    assert_eq!(verdict.reasons.len(), 2, "{:#?}", verdict.reasons);
    assert_eq!(
        verdict.reasons[0].to_string(),
        format!(
            "executable: daemon_started record 0 (recnum 0, version \"0.1.0\") reports executable {}, which the policy does not allow",
            "5e".repeat(32)
        )
    );
    assert!(verdict.reasons[1].detail.contains(&"61".repeat(32)));
    assert!(
        verdict.reasons[1]
            .detail
            .contains("(recnum 2, version \"0.1.1\")")
    );
    // Every start allowed: trusted.
    policy.executable_sha256 = Some([[0x5e; 32], [0x61; 32], [0x62; 32]].into());
    let verdict = appraise(&e, &policy, &w.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    // A single start with another executable.
    policy.executable_sha256 = Some([[0x61; 32]].into());
    let verdict = appraise(&w.evidence(), &policy, &w.expectations());
    assert!(only_reason(&verdict, Check::Executable).contains(&"5e".repeat(32)));
    // A pin and no daemon_started at all.
    let mut log = w.restarted_log(|_| {});
    log.retain(|c| !matches!(c, EventContent::DaemonStarted(_)));
    let verdict = appraise(&w.evidence_with_log(log), &policy, &w.expectations());
    assert!(verdict.failed(Check::Executable) && verdict.failed(Check::Log));
    assert_eq!(verdict.appraised.daemon_starts, 0);
    assert_eq!(verdict.appraised.daemon_version, None);
}

const POLICY_TOML: &str = r#"
ak_name = "000b5e4dd12e4a2b41b7f6ff4cd4b2a4ad4e4e2f1e8c6f4f0d8cd1a6b8d48d67f2e0"
application_pcr = 23
platform_pcrs = [0, 2, 4, 7, 9]
functions = ["579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63"]
only_listed_functions = true
manifest_sha256 = "abababababababababababababababababababababababababababababababab"
executable_sha256 = ["5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e",
                     "6262626262626262626262626262626262626262626262626262626262626262"]

[pcrs]
0 = "0101010101010101010101010101010101010101010101010101010101010101"
7 = ["0808080808080808080808080808080808080808080808080808080808080808",
     "0909090909090909090909090909090909090909090909090909090909090909"]

[firmware]
secure_boot = true
boot_applications = ["007f4c95125713b112093e21663e2d23e3c1ae9ce4b5de0d58a297332336a2d8"]
"#;

#[test]
fn policy_from_toml() {
    let p = AppraisalPolicy::from_toml(POLICY_TOML).unwrap();
    assert_eq!(p.ak.name.as_ref().map(Vec::len), Some(34));
    assert_eq!(p.application_pcr, 23);
    assert_eq!(
        p.platform_pcrs,
        Some(PcrSelection::new([0, 2, 4, 7, 9]).unwrap())
    );
    assert_eq!(p.pcrs[&0].len(), 1);
    assert_eq!(p.pcrs[&7].len(), 2);
    assert!(p.only_listed_functions);
    assert_eq!(p.functions.len(), 1);
    assert_eq!(p.manifest_sha256, Some([0xab; 32]));
    assert_eq!(
        p.executable_sha256,
        Some([[0x5e; 32], [0x62; 32]].into_iter().collect())
    );
    let fw = p.firmware.unwrap();
    assert!(fw.secure_boot);
    assert_eq!(fw.boot_applications.unwrap().len(), 1);

    let w = World::new();
    let pem = w.ak_public().public_key_pem().unwrap();
    let p = AppraisalPolicy::from_toml(&format!(
        "ak_public_pem = '''\n{pem}'''\nallow_unpinned_platform = true\n"
    ))
    .unwrap();
    assert_eq!(p.ak.public_key, Some(*w.ak.verifying_key()));
    assert_eq!(p.application_pcr, DEFAULT_APPLICATION_PCR);
    assert!(p.allow_unpinned_platform);
    let verdict = appraise(&w.evidence(), &p, &w.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    assert!(verdict.appraised.unpinned_platform);
    assert!(
        !AppraisalPolicy::from_toml(POLICY_TOML)
            .unwrap()
            .allow_unpinned_platform
    );
    assert_eq!(p.executable_sha256, None, "no pin unless the key is given");

    for bad in [
        "ak_name = \"zz\"",
        "ak_name = \"000B5E4DD12E4A2B41B7F6FF4CD4B2A4AD4E4E2F1E8C6F4F0D8CD1A6B8D48D67F2E0\"",
        "ak_public_pem = \"not a key\"",
        "colour = \"red\"",
        "[pcrs]\n24 = \"0101010101010101010101010101010101010101010101010101010101010101\"",
        "[pcrs]\nseven = \"0101010101010101010101010101010101010101010101010101010101010101\"",
        "[pcrs]\n7 = []",
        "[pcrs]\n7 = \"0101\"",
        "functions = [\"xyz\"]",
        "application_pcr = 24",
        "platform_pcrs = [0, 30]",
        "[firmware]\nsecure_boot = true\nshim = true",
        "ak_name = ",
        "executable_sha256 = []",
        "executable_sha256 = [\"xyz\"]",
        "executable_sha256 = [\"5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E5E\"]",
        "executable_sha256 = \"5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e\"",
    ] {
        assert!(
            matches!(
                AppraisalPolicy::from_toml(bad),
                Err(Error::AppraisalPolicy { .. })
            ),
            "{bad}"
        );
    }
    let Err(Error::AppraisalPolicy { reason }) =
        AppraisalPolicy::from_toml("executable_sha256 = []")
    else {
        panic!("an empty executable_sha256 list is refused");
    };
    assert_eq!(reason, "executable_sha256: an empty list allows nothing");
}

#[test]
fn a_policy_without_reference_values_is_refused_unless_it_allows_that() {
    let w = World::new();
    let ak_only = AppraisalPolicy {
        pcrs: BTreeMap::new(),
        allow_unpinned_platform: false,
        ..w.policy()
    };
    // The AK alone: any firmware, boot loader and kernel would pass.
    let verdict = appraise(&w.evidence(), &ak_only, &w.expectations());
    refused_for(&verdict, &[Check::ReferenceValues]);
    let detail = only_reason(&verdict, Check::ReferenceValues);
    assert!(
        detail.contains("pins no reference value") && detail.contains("[0, 2, 4, 7, 9]"),
        "{detail}"
    );
    assert_eq!(verdict.statement_key(), None);

    // A pin of a PCR outside the daemon's platform set pins nothing of the platform; an
    // empty [firmware] table only asks for the log to replay.
    let mut elsewhere = ak_only.clone();
    elsewhere.pcrs.insert(14, [[0x42; 32]].into());
    elsewhere.firmware = Some(FirmwareRules::default());
    let verdict = appraise(&w.evidence(), &elsewhere, &w.expectations());
    assert!(
        verdict.failed(Check::ReferenceValues),
        "{:#?}",
        verdict.reasons
    );

    // Allowed explicitly: trusted, and the verdict says that nothing was pinned.
    let allowed = AppraisalPolicy {
        allow_unpinned_platform: true,
        ..ak_only.clone()
    };
    let verdict = appraise(&w.evidence(), &allowed, &w.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    assert!(verdict.appraised.unpinned_platform);
}

#[test]
fn all_zero_pins_are_no_pins_and_real_values_are() {
    // A TPM with no firmware: every platform PCR is zero.
    let mut w = World::new();
    w.platform_values = w.platform.iter().map(|&i| (i, [0u8; 32])).collect();
    let zero_pins = AppraisalPolicy {
        pcrs: [(0, [[0u8; 32]].into()), (7, [[0u8; 32]].into())].into(),
        allow_unpinned_platform: false,
        ..w.policy()
    };
    let verdict = appraise(&w.evidence(), &zero_pins, &w.expectations());
    refused_for(&verdict, &[Check::ReferenceValues]);
    let detail = only_reason(&verdict, Check::ReferenceValues);
    assert!(detail.contains("PCRs [0, 7] allow all zeros"), "{detail}");
    // A list that also allows all zeros does not pin either.
    let mut either = zero_pins.clone();
    either.pcrs.insert(4, [[0u8; 32], [0x42; 32]].into());
    assert!(!either.pins_platform(None));
    assert!(appraise(&w.evidence(), &either, &w.expectations()).failed(Check::ReferenceValues));

    // A real pinned value of a platform PCR: trusted, nothing to warn about.
    let w = World::new();
    let pinned = AppraisalPolicy {
        pcrs: [(7, [w.platform_values[&7]].into())].into(),
        allow_unpinned_platform: false,
        ..w.policy()
    };
    assert!(pinned.pins_platform(Some(&w.selection())));
    let verdict = appraise(&w.evidence(), &pinned, &w.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    assert!(!verdict.appraised.unpinned_platform);
    // Pinned to another value: refused for the value, not for a lack of reference values.
    let mut other = pinned.clone();
    other.pcrs.insert(7, [[0x42; 32]].into());
    refused_for(
        &appraise(&w.evidence(), &other, &w.expectations()),
        &[Check::Pcr],
    );

    // A firmware-log rule is a reference value too.
    let fw = World::new().with_firmware(SB_LOG);
    let rule = AppraisalPolicy {
        pcrs: BTreeMap::new(),
        allow_unpinned_platform: false,
        firmware: Some(FirmwareRules {
            secure_boot: true,
            boot_applications: None,
        }),
        ..fw.policy()
    };
    let verdict = appraise(&fw.evidence(), &rule, &fw.expectations());
    assert!(verdict.trusted, "{:#?}", verdict.reasons);
    assert!(!verdict.appraised.unpinned_platform);
}
