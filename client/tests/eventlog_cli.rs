//! Runs the `arbiter eventlog` binary the way an outside tool would: `replay --json` on every
//! real firmware log must print exactly the `pcrs` of the reference file, and both commands
//! accept the daemon's measurement log as JSON Lines (with a torn tail) and as a JSON array.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arbiter_measured_boot::cel::{
    EventContent, FunctionLoaded, Id, Record, Sha256Digest, TlsKeyReplaced, replay, to_json_array,
    to_jsonl_line,
};
use serde_json::{Value, json};

fn logs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../measured-boot/testdata/eventlogs")
}

#[allow(clippy::unwrap_used)] // test helper: a failure here is a test failure
fn arbiter(args: &[&str], file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn replay_json_equals_the_reference_for_every_log_it_handled() {
    let mut compared = 0;
    for entry in std::fs::read_dir(logs_dir().join("expected")).unwrap() {
        let path = entry.unwrap().path();
        let want: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let log = logs_dir()
            .join(path.file_stem().unwrap())
            .with_extension("bin");
        let out = arbiter(&["eventlog", "replay", "--json"], &log);
        if want["exit"] != 0 {
            // The reference crashed or refused; we must not crash.
            assert!(
                out.status.code().is_some(),
                "{}: killed by a signal",
                log.display()
            );
            continue;
        }
        assert!(
            out.status.success(),
            "{}: {}",
            log.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(got, json!({ "pcrs": want["pcrs"] }), "{}", log.display());
        compared += 1;
    }
    assert_eq!(compared, 8);
}

#[test]
fn show_lists_every_event_of_every_log() {
    for entry in std::fs::read_dir(logs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "bin") {
            continue;
        }
        let out = arbiter(&["eventlog", "show"], &path);
        assert!(out.status.success(), "{}", path.display());
        let text = String::from_utf8(out.stdout).unwrap();
        let header = text.lines().next().unwrap();
        let n: usize = header
            .rsplit(", ")
            .next()
            .unwrap()
            .trim_end_matches(" events")
            .parse()
            .unwrap();
        assert_eq!(
            text.lines().filter(|l| l.starts_with('#')).count(),
            n,
            "{}",
            path.display()
        );
    }
}

#[allow(clippy::unwrap_used)] // test helper: a failure here is a test failure
fn records() -> Vec<Record> {
    let contents = [
        EventContent::FunctionLoaded(FunctionLoaded {
            function_id: Id([1; 16]),
            name: "median".into(),
            sha256: Sha256Digest([7; 32]),
        }),
        EventContent::TlsKeyReplaced(TlsKeyReplaced {
            tls_spki_sha256: Sha256Digest([9; 32]),
        }),
    ];
    contents
        .into_iter()
        .enumerate()
        .map(|(i, c)| Record::new(i as u64, 23, c).unwrap())
        .collect()
}

#[test]
fn replay_and_show_a_measurement_log() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let records = records();
    let want = json!({ "pcrs": { "sha256": { "23": hex::encode(replay(&records)) } } });

    let mut lines: Vec<u8> = records
        .iter()
        .flat_map(|r| to_jsonl_line(r).unwrap())
        .collect();
    lines.extend(b"{\"recnum\":2,\"pc");
    let jsonl = dir.join("measurements.jsonl");
    std::fs::write(&jsonl, &lines).unwrap();
    let out = arbiter(&["eventlog", "replay", "--json"], &jsonl);
    assert!(out.status.success());
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), want);
    assert!(String::from_utf8_lossy(&out.stderr).contains("torn last record (line 2"));

    let array = dir.join("measurements.json");
    std::fs::write(&array, to_json_array(&records).unwrap()).unwrap();
    let out = arbiter(&["eventlog", "replay", "--json"], &array);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), want);

    let out = arbiter(&["eventlog", "show"], &array);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("function_loaded [digest ok]"), "{text}");
    assert!(text.contains("name: \"median\""), "{text}");
}

#[test]
fn errors_are_reported_not_panicked() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bad = dir.join("truncated.bin");
    let full = std::fs::read(logs_dir().join("event-arch-linux.bin")).unwrap();
    std::fs::write(&bad, &full[..1000]).unwrap();
    let out = arbiter(&["eventlog", "replay"], &bad);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("truncated in"), "{err}");
    let out = arbiter(&["eventlog", "show"], &dir.join("does-not-exist"));
    assert_eq!(out.status.code(), Some(1));
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../measured-boot/tests/fixtures")
        .join(name)
}

#[test]
fn declared_banks_the_events_lack_are_listed_incomplete_not_fatal() {
    // sha1, sha256, sha384 and sha512 declared; every event carries sha1 and sha256 only.
    let four = fixture("agile_4_banks_sha1_sha256_carried.bin");
    let out = arbiter(&["eventlog", "replay"], &four);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let banks: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    assert_eq!(
        banks,
        [
            "sha1:",
            "sha256:",
            "sha384: incomplete (event 1, PCR 0, has no sha384 digest; 11 of 11 events lack it)",
            "sha512: incomplete (event 1, PCR 0, has no sha512 digest; 11 of 11 events lack it)",
        ],
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("   ")).count(), 16);

    let out = arbiter(&["eventlog", "replay", "--json"], &four);
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["pcrs"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["sha1", "sha256"]
    );
    assert_eq!(got["pcrs"]["sha256"].as_object().unwrap().len(), 8);
    let lacking = json!({ "first_event": 1, "pcr": 0, "events_lacking": 11, "events": 11 });
    assert_eq!(
        got["incomplete"],
        json!({ "sha384": lacking, "sha512": lacking })
    );

    // sha1 and sha256 declared; one event lacks sha256: only sha1 has values.
    let partial = fixture("agile_sha256_incomplete.bin");
    let out = arbiter(&["eventlog", "replay", "--json"], &partial);
    assert!(out.status.success());
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got["pcrs"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["sha1"]
    );
    assert_eq!(
        got["incomplete"],
        json!({ "sha256": { "first_event": 2, "pcr": 7, "events_lacking": 1, "events": 11 } })
    );

    // `show` lists every event and names the incomplete bank under its header.
    let out = arbiter(&["eventlog", "show"], &partial);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("firmware event log: crypto-agile, banks sha1 sha256, 12 events")
    );
    assert_eq!(
        lines.next(),
        Some("  sha256: incomplete (event 2, PCR 7, has no sha256 digest; 1 of 11 events lack it)")
    );
    assert_eq!(text.lines().filter(|l| l.starts_with('#')).count(), 12);
}
