//! Crypto-agile logs whose Spec ID event declares banks their events do not all carry, as
//! real firmware writes them: the two committed fixtures in `tests/fixtures/` are what
//! `craft` builds, they parse, their complete banks replay to exactly what `tpm2_eventlog`
//! (tpm2-tools, run as a process) computes, and their incomplete banks are named, not valued.

mod craft;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use arbiter_measured_boot::HashAlg;
use arbiter_measured_boot::firmware::{EventLog, IncompleteBank, LogFormat};
use craft::*;
use serde_json::json;

const FOUR_BANKS: &str = "agile_4_banks_sha1_sha256_carried.bin";
const SHA256_INCOMPLETE: &str = "agile_sha256_incomplete.bin";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn committed_fixtures_are_what_craft_builds() {
    for (name, bytes) in [
        (FOUR_BANKS, four_banks_two_carried()),
        (SHA256_INCOMPLETE, sha256_incomplete()),
    ] {
        // To regenerate after changing `craft`: ARBITER_WRITE_FIXTURES=1 cargo test ...
        if std::env::var_os("ARBITER_WRITE_FIXTURES").is_some() {
            std::fs::write(fixture(name), &bytes).unwrap();
        }
        assert_eq!(std::fs::read(fixture(name)).unwrap(), bytes, "{name}");
    }
}

/// The `pcrs:` section `tpm2_eventlog FILE` prints last: bank → PCR → value.
#[allow(clippy::unwrap_used, clippy::expect_used)] // test helper: a failure is a test failure
fn tpm2_eventlog(file: &Path) -> BTreeMap<String, BTreeMap<u32, Vec<u8>>> {
    let out = Command::new("tpm2_eventlog")
        .arg(file)
        .output()
        .expect("tpm2_eventlog (tpm2-tools, `make deps` installs it) must be on PATH");
    assert!(
        out.status.success(),
        "tpm2_eventlog {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (_, pcrs) = text.split_once("\npcrs:\n").expect("a pcrs: section");
    let mut banks: BTreeMap<String, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    let mut bank = None;
    for line in pcrs.lines() {
        if let Some(name) = line.strip_prefix("  ").and_then(|l| l.strip_suffix(':')) {
            bank = Some(name.trim().to_owned());
            banks.entry(name.trim().to_owned()).or_default();
        } else if let Some((pcr, value)) = line.trim().split_once(':') {
            let bank = bank.clone().expect("a PCR line after a bank line");
            let value = value.trim().strip_prefix("0x").expect("a 0x value");
            banks
                .entry(bank)
                .or_default()
                .insert(pcr.trim().parse().unwrap(), hex::decode(value).unwrap());
        }
    }
    banks
}

#[test]
fn complete_banks_equal_tpm2_eventlog() {
    for name in [FOUR_BANKS, SHA256_INCOMPLETE] {
        let path = fixture(name);
        let ours = EventLog::from_bytes(&std::fs::read(&path).unwrap())
            .unwrap()
            .replay()
            .unwrap();
        let theirs = tpm2_eventlog(&path);
        assert!(!ours.banks.is_empty(), "{name}");
        for (alg, pcrs) in &ours.banks {
            assert_eq!(theirs.get(&alg.name()), Some(pcrs), "{name}: {alg}");
        }
        // tpm2_eventlog prints every bank some event extended, including a bank that other
        // events lack (its values then are a partial replay); we name those instead.
        for bank in theirs.keys() {
            assert!(
                ours.banks.keys().any(|a| a.name() == *bank)
                    || ours.incomplete.iter().any(|b| b.alg.name() == *bank),
                "{name}: tpm2_eventlog has {bank}"
            );
        }
    }
}

#[test]
fn declared_but_never_carried_banks_are_incomplete() {
    let log = EventLog::from_bytes(&four_banks_two_carried()).unwrap();
    assert_eq!(log.format, LogFormat::CryptoAgile);
    assert_eq!(
        log.banks,
        [
            (HashAlg::Sha1, 20),
            (HashAlg::Sha256, 32),
            (HashAlg::Sha384, 48),
            (HashAlg::Sha512, 64)
        ]
    );
    let pcrs = log.replay().unwrap();
    assert_eq!(
        pcrs.banks.keys().copied().collect::<Vec<_>>(),
        [HashAlg::Sha1, HashAlg::Sha256]
    );
    // Event 1, the S-CRTM version, is the first that lacks them.
    let lacking = |alg| IncompleteBank {
        alg,
        first_event: 1,
        first_pcr: 0,
        lacking: SMALL_BOOT_EXTENDING,
        extending: SMALL_BOOT_EXTENDING,
    };
    assert_eq!(
        pcrs.incomplete,
        [lacking(HashAlg::Sha384), lacking(HashAlg::Sha512)]
    );
    assert_eq!(
        pcrs.incomplete[0].to_string(),
        "sha384: incomplete (event 1, PCR 0, has no sha384 digest; 11 of 11 events lack it)"
    );
    assert!(pcrs.unsupported.is_empty());
    // PCR 7: SecureBoot, then the separator; PCR 0: the S-CRTM version, then the separator.
    let sb = variable_data("SecureBoot", &[1]);
    let pcr7 = extend256(&extend256(&[0; 32], &sha256(&sb)), &sha256(&[0; 4]));
    assert_eq!(pcrs.get(HashAlg::Sha256, 7), Some(&pcr7[..]));
    let version: Vec<u8> = "1.0\0".encode_utf16().flat_map(u16::to_le_bytes).collect();
    let pcr0 = extend256(&extend256(&[0; 32], &sha256(&version)), &sha256(&[0; 4]));
    assert_eq!(pcrs.get(HashAlg::Sha256, 0), Some(&pcr0[..]));
    assert_eq!(pcrs.get(HashAlg::Sha384, 0), None);
}

#[test]
fn one_event_without_sha256_makes_sha256_incomplete_with_no_values() {
    let log = EventLog::from_bytes(&sha256_incomplete()).unwrap();
    assert_eq!(log.events[2].digests.len(), 1);
    let pcrs = log.replay().unwrap();
    assert_eq!(
        pcrs.incomplete(HashAlg::Sha256),
        Some(&IncompleteBank {
            alg: HashAlg::Sha256,
            first_event: 2,
            first_pcr: 7,
            lacking: 1,
            extending: SMALL_BOOT_EXTENDING,
        })
    );
    assert_eq!(pcrs.incomplete(HashAlg::Sha1), None);
    assert_eq!(
        pcrs.banks.keys().copied().collect::<Vec<_>>(),
        [HashAlg::Sha1]
    );
    // Not even PCR 4, whose events all carry sha256, has a SHA-256 value: a bank is
    // complete or has none.
    for pcr in 0..8 {
        assert_eq!(pcrs.get(HashAlg::Sha256, pcr), None, "PCR {pcr}");
        assert!(pcrs.get(HashAlg::Sha1, pcr).is_some(), "PCR {pcr}");
    }
}

#[test]
fn json_lists_complete_values_and_names_incomplete_banks() {
    let pcrs = EventLog::from_bytes(&sha256_incomplete())
        .unwrap()
        .replay()
        .unwrap();
    let v = pcrs.to_json();
    assert_eq!(
        v["pcrs"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["sha1"]
    );
    assert_eq!(
        v["incomplete"],
        json!({ "sha256": { "first_event": 2, "pcr": 7, "events_lacking": 1, "events": 11 } })
    );
    // A log whose banks are all complete has no "incomplete" member, as before.
    let mut complete = spec_id(&[(SHA1, 20), (SHA256, 32)]);
    complete.extend(measured(4, SEPARATOR, &[0; 4]));
    let v = EventLog::from_bytes(&complete)
        .unwrap()
        .replay()
        .unwrap()
        .to_json();
    assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["pcrs"]);
}
