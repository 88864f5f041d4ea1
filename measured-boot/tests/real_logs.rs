//! Replays the real firmware logs in `testdata/eventlogs/` and compares with the values
//! `tpm2_eventlog` computed (`expected/*.json`); logs the reference crashed on or refused must
//! parse or be refused with an error, never panic.

use std::fs;
use std::path::{Path, PathBuf};

use arbiter_measured_boot::firmware::{
    DataCheck, DataCoverage, EventData, EventLog, EventType, LogFormat,
};
use arbiter_measured_boot::{FirmwareLogError, HashAlg};
use serde_json::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/eventlogs")
}

#[allow(clippy::unwrap_used)] // test helper: a failure here is a test failure
fn load(name: &str) -> Vec<u8> {
    fs::read(dir().join(name)).unwrap()
}

#[allow(clippy::unwrap_used)] // test helper: a failure here is a test failure
fn expected(stem: &str) -> Value {
    serde_json::from_slice(&load(&format!("expected/{stem}.json"))).unwrap()
}

#[allow(clippy::unwrap_used)] // test helper: a failure here is a test failure
fn logs() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_log_has_a_reference() {
    let names = logs();
    assert_eq!(names.len(), 10);
    for name in names {
        let stem = name.trim_end_matches(".bin");
        assert!(expected(stem)["exit"].is_i64(), "{stem}");
    }
}

#[test]
fn replay_equals_tpm2_eventlog_where_it_succeeded() {
    let mut compared = 0;
    for name in logs() {
        let stem = name.trim_end_matches(".bin");
        let want = expected(stem);
        if want["exit"] != 0 {
            continue;
        }
        let log = EventLog::from_bytes(&load(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let got = log.replay().unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got.unsupported.is_empty(), "{name}");
        assert_eq!(got.to_json()["pcrs"], want["pcrs"], "{name}");
        compared += 1;
    }
    assert_eq!(compared, 8);
}

#[test]
fn logs_the_reference_failed_on_are_handled() {
    for name in logs() {
        let stem = name.trim_end_matches(".bin");
        if expected(stem)["exit"] == 0 {
            continue;
        }
        // Parse or refuse, never panic; both of today's such logs parse.
        let log = EventLog::from_bytes(&load(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        log.replay().unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn short_no_action_log_is_a_legacy_log_with_a_startup_locality() {
    // 49 bytes: one legacy-format EV_NO_ACTION event carrying StartupLocality 3 and no Spec ID
    // header. tpm2_eventlog refuses it; it is a valid (if useless) SHA-1 log.
    let log = EventLog::from_bytes(&load("short_no_action_eventlog.bin")).unwrap();
    assert_eq!(log.format, LogFormat::Sha1Legacy);
    assert_eq!(log.events.len(), 1);
    assert_eq!(log.events[0].decoded, EventData::StartupLocality(3));
    let pcrs = log.replay().unwrap();
    let mut pcr0 = [0u8; 20];
    pcr0[19] = 3;
    assert_eq!(pcrs.get(HashAlg::Sha1, 0), Some(&pcr0[..]));
}

#[test]
fn option_rom_log_parses_as_legacy_sha1() {
    // tpm2_eventlog 5.4 segfaults on this legacy SHA-1 log.
    let log = EventLog::from_bytes(&load("option_rom_eventlog.bin")).unwrap();
    assert_eq!(log.format, LogFormat::Sha1Legacy);
    let pcrs = log.replay().unwrap();
    assert_eq!(
        pcrs.banks.keys().copied().collect::<Vec<_>>(),
        vec![HashAlg::Sha1]
    );
    assert!(
        log.events
            .iter()
            .any(|e| e.event_type == EventType::EFI_BOOT_SERVICES_DRIVER && e.pcr == 2),
        "the option ROM loads are image-load events in PCR 2"
    );
}

#[test]
fn separators_and_actions_in_real_logs_match_their_digests() {
    for name in logs() {
        let log = EventLog::from_bytes(&load(&name)).unwrap();
        for e in &log.events {
            if matches!(e.event_type, EventType::SEPARATOR | EventType::EFI_ACTION) {
                assert!(
                    matches!(e.check_data(), DataCheck::Matches(_)),
                    "{name} event {}: {:?}",
                    e.index,
                    e.check_data()
                );
            }
        }
    }
}

#[test]
fn truncating_a_real_log_anywhere_is_an_error_naming_the_event() {
    let bytes = load("event-sd-boot-fedora37.bin");
    let full = EventLog::from_bytes(&bytes).unwrap();
    for cut in 1..bytes.len() {
        let boundary = full.events.iter().any(|e| e.offset == cut);
        match EventLog::from_bytes(&bytes[..cut]) {
            Ok(_) => assert!(boundary, "cut at {cut} parsed"),
            Err(FirmwareLogError::Truncated { event, offset, .. }) => {
                assert!(!boundary, "cut at {cut}");
                assert_eq!(full.events[event].offset, offset);
            }
            Err(other) => panic!("cut at {cut}: {other}"),
        }
    }
}

#[test]
fn data_checks_on_real_logs() {
    let mut grub_commands = 0;
    let mut boot_vars = (0, 0);
    for name in logs() {
        let log = EventLog::from_bytes(&load(&name)).unwrap();
        for e in &log.events {
            let check = e.check_data();
            match e.event_type {
                EventType::EFI_VARIABLE_DRIVER_CONFIG => {
                    assert_eq!(
                        check,
                        DataCheck::Matches(DataCoverage::Whole),
                        "{name} #{}",
                        e.index
                    );
                }
                // Firmware differ: some hash the whole UEFI_VARIABLE_DATA, most only the value.
                EventType::EFI_VARIABLE_BOOT => match check {
                    DataCheck::Matches(DataCoverage::Whole) => boot_vars.0 += 1,
                    DataCheck::Matches(DataCoverage::VariableValue) => boot_vars.1 += 1,
                    other => panic!("{name} #{}: {other:?}", e.index),
                },
                EventType::IPL if e.data.starts_with(b"grub_cmd: ") => {
                    assert_eq!(
                        check,
                        DataCheck::Matches(DataCoverage::TextAfterLabel("grub_cmd: ")),
                        "{name} #{}",
                        e.index
                    );
                    grub_commands += 1;
                }
                EventType::EFI_BOOT_SERVICES_APPLICATION => {
                    assert_eq!(check, DataCheck::NotCheckable, "{name} #{}", e.index);
                }
                _ => {}
            }
        }
    }
    assert_eq!(grub_commands, 36 + 64 + 66);
    assert!(boot_vars.0 > 0 && boot_vars.1 > 0, "{boot_vars:?}");
}

#[test]
fn sb_cert_log_authority_events_do_not_match_their_digests() {
    // The firmware's authority event matches; the two that follow (shim's vendor certificate)
    // carry 6 bytes after their UEFI_VARIABLE_DATA and hash to none of their digests:
    // reported, not trusted.
    let log = EventLog::from_bytes(&load("sb_cert_eventlog.bin")).unwrap();
    let authority: Vec<_> = log
        .events
        .iter()
        .filter(|e| e.event_type == EventType::EFI_VARIABLE_AUTHORITY)
        .map(|e| {
            (
                e.index,
                e.check_data(),
                matches!(e.decoded, EventData::Malformed(_)),
            )
        })
        .collect();
    assert_eq!(
        authority,
        [
            (8, DataCheck::Matches(DataCoverage::Whole), false),
            (12, DataCheck::Mismatch(HashAlg::Sha1), true),
            (14, DataCheck::Mismatch(HashAlg::Sha1), true)
        ]
    );
}
