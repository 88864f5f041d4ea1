//! Fuzz the party's appraisal policy as the client reads it (`AppraisalPolicy::from_toml`,
//! `docs/appraisal.md`), and the reference values a policy is compared with
//! (`ReferenceValues::from_toml`, then `compare`). Beyond "no panic": an accepted policy
//! keeps every PCR index in 0..=23, and written back as TOML (every field, in the
//! documented keys) it reads back as the same policy; accepted reference values compare
//! against an accepted policy without failing.
#![no_main]

use arbiter_client::reference::{ReferenceValues, captured_cmdlines, compare};
use arbiter_policy::appraisal::AppraisalPolicy;
use libfuzzer_sys::fuzz_target;
use p256::pkcs8::EncodePublicKey as _;
use toml::{Table, Value};

fn digests<'a>(set: impl IntoIterator<Item = &'a [u8; 32]>) -> Value {
    Value::Array(
        set.into_iter()
            .map(|d| Value::String(hex::encode(d)))
            .collect(),
    )
}

/// The policy as TOML, every field spelled out.
fn to_toml(p: &AppraisalPolicy) -> String {
    let mut t = Table::new();
    if let Some(name) = &p.ak.name {
        t.insert("ak_name".into(), Value::String(hex::encode(name)));
    }
    if let Some(key) = &p.ak.public_key {
        let pem = key
            .to_public_key_pem(Default::default())
            .expect("a P-256 key has a PEM form");
        t.insert("ak_public_pem".into(), Value::String(pem));
    }
    t.insert(
        "application_pcr".into(),
        Value::Integer(p.application_pcr.into()),
    );
    if let Some(sel) = &p.platform_pcrs {
        let list = sel.pcrs().into_iter().map(|i| Value::Integer(i.into()));
        t.insert("platform_pcrs".into(), Value::Array(list.collect()));
    }
    t.insert(
        "allow_weak_platform_pcrs".into(),
        Value::Boolean(p.allow_weak_platform_pcrs),
    );
    let mut pcrs = Table::new();
    for (index, values) in &p.pcrs {
        pcrs.insert(index.to_string(), digests(values));
    }
    t.insert("pcrs".into(), Value::Table(pcrs));
    if let Some(fw) = &p.firmware {
        let mut f = Table::new();
        f.insert("secure_boot".into(), Value::Boolean(fw.secure_boot));
        if let Some(apps) = &fw.boot_applications {
            f.insert("boot_applications".into(), digests(apps));
        }
        t.insert("firmware".into(), Value::Table(f));
    }
    t.insert("functions".into(), digests(&p.functions));
    t.insert(
        "only_listed_functions".into(),
        Value::Boolean(p.only_listed_functions),
    );
    if let Some(m) = &p.manifest_sha256 {
        t.insert("manifest_sha256".into(), Value::String(hex::encode(m)));
    }
    if let Some(list) = &p.executable_sha256 {
        t.insert("executable_sha256".into(), digests(list));
    }
    t.insert(
        "allow_unpinned_platform".into(),
        Value::Boolean(p.allow_unpinned_platform),
    );
    toml::to_string(&t).expect("a table serialises")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = AppraisalPolicy::from_toml(text);
    if let Ok(policy) = &policy {
        assert!(policy.application_pcr <= 23);
        assert!(policy.pcrs.keys().all(|&i| i <= 23));
        let again = to_toml(policy);
        let reread = AppraisalPolicy::from_toml(&again)
            .unwrap_or_else(|e| panic!("the policy written back does not read: {e}\n{again}"));
        assert_eq!(&reread, policy, "written back:\n{again}");
        let _ = policy.pins_platform(policy.platform_pcrs.as_ref());
        let _ = policy.pinned_platform_pcrs(policy.platform_pcrs.as_ref());
        let _ = policy.has_firmware_rule();
    }
    let _ = captured_cmdlines(text);
    if let Ok(reference) = ReferenceValues::from_toml(text) {
        let base = policy.unwrap_or_default();
        let _ = compare(&base, text, &reference);
    }
});
