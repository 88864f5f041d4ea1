//! Crafted firmware logs: the framing errors, the replay rules (StartupLocality, EV_NO_ACTION,
//! unsupported and incomplete banks) and the data-versus-digest check, each on a log built byte by byte here.

mod craft;

use arbiter_measured_boot::firmware::{
    DataCheck, DataCoverage, EventData, EventLog, EventType, IncompleteBank,
};
use arbiter_measured_boot::{FirmwareLogError, HashAlg, ReplayError};
use craft::*;
use sha1::Sha1;
use sha2::Digest;

fn two_banks() -> Vec<u8> {
    spec_id(&[(4, 20), (11, 32)])
}

#[test]
fn replay_extends_every_bank_and_skips_no_action() {
    let mut log = two_banks();
    log.extend(measured(7, SEPARATOR, &[0; 4]));
    log.extend(agile_event(
        7,
        NO_ACTION,
        &[(4, vec![9; 20]), (11, vec![9; 32])],
        b"x",
    ));
    log.extend(measured(
        7,
        EFI_ACTION,
        b"Calling EFI Application from Boot Option",
    ));
    let parsed = EventLog::from_bytes(&log).unwrap();
    assert_eq!(parsed.events.len(), 4);
    let pcrs = parsed.replay().unwrap();
    let want = extend256(
        &extend256(&[0; 32], &sha256(&[0; 4])),
        &sha256(b"Calling EFI Application from Boot Option"),
    );
    assert_eq!(pcrs.get(HashAlg::Sha256, 7), Some(&want[..]));
    assert_eq!(pcrs.banks[&HashAlg::Sha1].len(), 1);
    assert_eq!(
        pcrs.get(HashAlg::Sha256, 0),
        None,
        "PCR 0 was never extended"
    );
}

#[test]
fn startup_locality_sets_pcr0_in_every_bank() {
    let mut log = two_banks();
    log.extend(agile_event(
        0,
        NO_ACTION,
        &[(4, vec![0; 20]), (11, vec![0; 32])],
        b"StartupLocality\0\x03",
    ));
    log.extend(measured(0, SEPARATOR, &[0; 4]));
    let parsed = EventLog::from_bytes(&log).unwrap();
    assert_eq!(parsed.events[1].decoded, EventData::StartupLocality(3));
    let pcrs = parsed.replay().unwrap();
    let mut init = [0u8; 32];
    init[31] = 3;
    assert_eq!(
        pcrs.get(HashAlg::Sha256, 0),
        Some(&extend256(&init, &sha256(&[0; 4]))[..])
    );
    let sha1_pcr0 = pcrs.get(HashAlg::Sha1, 0).unwrap();
    let mut init1 = [0u8; 20];
    init1[19] = 3;
    let want1 = Sha1::new()
        .chain_update(init1)
        .chain_update(sha1(&[0; 4]))
        .finalize()
        .to_vec();
    assert_eq!(sha1_pcr0, &want1[..]);
}

#[test]
fn startup_locality_after_an_extend_of_pcr0_is_refused() {
    let mut log = two_banks();
    log.extend(measured(0, SEPARATOR, &[0; 4]));
    log.extend(agile_event(0, NO_ACTION, &[], b"StartupLocality\0\x03"));
    let err = EventLog::from_bytes(&log).unwrap().replay().unwrap_err();
    assert_eq!(err, ReplayError::LateStartupLocality { event: 2 });
}

#[test]
fn startup_locality_must_be_0_3_or_4() {
    let mut log = two_banks();
    log.extend(agile_event(0, NO_ACTION, &[], b"StartupLocality\0\x02"));
    let err = EventLog::from_bytes(&log).unwrap().replay().unwrap_err();
    assert_eq!(
        err,
        ReplayError::InvalidStartupLocality {
            event: 1,
            locality: 2
        }
    );
}

#[test]
fn a_missing_bank_digest_makes_that_bank_incomplete_not_the_log_unreadable() {
    let mut log = two_banks();
    log.extend(agile_event(4, SEPARATOR, &[(11, sha256(&[0; 4]))], &[0; 4]));
    log.extend(measured(4, EFI_ACTION, b"x"));
    let parsed = EventLog::from_bytes(&log).unwrap();
    assert_eq!(parsed.events[1].digests.len(), 1);
    let pcrs = parsed.replay().unwrap();
    assert_eq!(
        pcrs.incomplete,
        vec![IncompleteBank {
            alg: HashAlg::Sha1,
            first_event: 1,
            first_pcr: 4,
            lacking: 1,
            extending: 2
        }]
    );
    assert_eq!(
        pcrs.incomplete[0].to_string(),
        "sha1: incomplete (event 1, PCR 4, has no sha1 digest; 1 of 2 events lack it)"
    );
    // The incomplete bank has no values at all; the complete one replays in full.
    assert_eq!(
        pcrs.banks.keys().copied().collect::<Vec<_>>(),
        [HashAlg::Sha256]
    );
    assert_eq!(pcrs.get(HashAlg::Sha1, 4), None);
    let want = extend256(&extend256(&[0; 32], &sha256(&[0; 4])), &sha256(b"x"));
    assert_eq!(pcrs.get(HashAlg::Sha256, 4), Some(&want[..]));
    assert_eq!(parsed.incomplete_banks(), pcrs.incomplete);
}

#[test]
fn an_event_with_no_digest_at_all_leaves_no_complete_bank() {
    let mut log = two_banks();
    log.extend(measured(0, SEPARATOR, &[0; 4]));
    log.extend(agile_event(7, SEPARATOR, &[], &[0; 4]));
    let pcrs = EventLog::from_bytes(&log).unwrap().replay().unwrap();
    assert!(pcrs.banks.is_empty(), "{pcrs:?}");
    let names: Vec<_> = pcrs
        .incomplete
        .iter()
        .map(|b| (b.alg, b.first_event, b.first_pcr, b.lacking))
        .collect();
    assert_eq!(
        names,
        [(HashAlg::Sha1, 2, 7, 1), (HashAlg::Sha256, 2, 7, 1)]
    );
    // Not extending, so not lacking: an EV_NO_ACTION without digests leaves banks complete.
    let mut log = two_banks();
    log.extend(agile_event(0, NO_ACTION, &[], b"x"));
    log.extend(measured(0, SEPARATOR, &[0; 4]));
    let pcrs = EventLog::from_bytes(&log).unwrap().replay().unwrap();
    assert!(pcrs.incomplete.is_empty());
    assert_eq!(pcrs.banks.len(), 2);
}

#[test]
fn startup_locality_after_pcr0_is_late_even_when_no_bank_is_replayed() {
    let mut log = two_banks();
    log.extend(agile_event(0, SEPARATOR, &[], &[0; 4]));
    log.extend(agile_event(0, NO_ACTION, &[], b"StartupLocality\0\x03"));
    let err = EventLog::from_bytes(&log).unwrap().replay().unwrap_err();
    assert_eq!(err, ReplayError::LateStartupLocality { event: 2 });
}

#[test]
fn undeclared_algorithm_is_an_error_with_offset() {
    let mut log = two_banks();
    let offset = log.len();
    log.extend(agile_event(4, SEPARATOR, &[(12, sha384(&[0; 4]))], &[0; 4]));
    assert_eq!(
        EventLog::from_bytes(&log).unwrap_err(),
        FirmwareLogError::UndeclaredAlgorithm {
            event: 1,
            offset,
            alg_id: 12
        }
    );
}

#[test]
fn duplicate_and_excess_digests_are_errors() {
    let mut log = two_banks();
    log.extend(agile_event(
        4,
        SEPARATOR,
        &[(11, sha256(b"")), (11, sha256(b""))],
        &[],
    ));
    assert!(matches!(
        EventLog::from_bytes(&log).unwrap_err(),
        FirmwareLogError::DuplicateDigest {
            event: 1,
            alg: HashAlg::Sha256,
            ..
        }
    ));
    let mut log = two_banks();
    let mut ev = 4u32.to_le_bytes().to_vec();
    ev.extend(SEPARATOR.to_le_bytes());
    ev.extend(u32::MAX.to_le_bytes());
    log.extend(ev);
    assert!(matches!(
        EventLog::from_bytes(&log).unwrap_err(),
        FirmwareLogError::TooManyDigests {
            event: 1,
            count: u32::MAX,
            declared: 2,
            ..
        }
    ));
}

#[test]
fn huge_event_size_is_truncation_not_allocation() {
    let mut log = two_banks();
    let mut ev = agile_event(4, SEPARATOR, &[(4, sha1(b"")), (11, sha256(b""))], &[]);
    let n = ev.len();
    ev[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
    log.extend(ev);
    assert!(matches!(
        EventLog::from_bytes(&log).unwrap_err(),
        FirmwareLogError::Truncated {
            event: 1,
            field: "event data",
            needed: 0xFFFF_FFFF,
            ..
        }
    ));
}

#[test]
fn spec_id_errors() {
    for (algs, needle) in [
        (vec![], "no algorithms"),
        (vec![(11, 20)], "sha256 declared with 20-byte digests"),
        (vec![(4, 20), (4, 20)], "declared twice"),
    ] {
        let err = EventLog::from_bytes(&spec_id(&algs)).unwrap_err();
        assert!(err.to_string().contains(needle), "{err}");
    }
    let mut bad = spec_id(&[(4, 20)]);
    let count_at = 32 + 16 + 8; // header, signature, class+versions
    bad[count_at..count_at + 4].copy_from_slice(&1000u32.to_le_bytes());
    let err = EventLog::from_bytes(&bad).unwrap_err();
    assert!(matches!(err, FirmwareLogError::SpecId { .. }), "{err}");
}

#[test]
fn sm3_bank_is_parsed_but_reported_unsupported() {
    let mut log = spec_id(&[(11, 32), (0x12, 32)]);
    log.extend(agile_event(
        4,
        SEPARATOR,
        &[(11, sha256(&[0; 4])), (0x12, vec![7; 32])],
        &[0; 4],
    ));
    let parsed = EventLog::from_bytes(&log).unwrap();
    let pcrs = parsed.replay().unwrap();
    assert_eq!(pcrs.unsupported, vec![HashAlg::Sm3_256]);
    assert!(pcrs.get(HashAlg::Sha256, 4).is_some());
    assert_eq!(
        parsed.events[1].digest(HashAlg::Sm3_256),
        Some(&[7u8; 32][..])
    );
}

#[test]
fn legacy_sha1_log() {
    let mut log = legacy_event(0, NO_ACTION, &[0; 20], b"Spec ID Event00\0rest");
    let d: [u8; 20] = sha1(&[0; 4]).try_into().unwrap();
    log.extend(legacy_event(7, SEPARATOR, &d, &[0; 4]));
    let parsed = EventLog::from_bytes(&log).unwrap();
    assert_eq!(
        parsed.events[0].decoded,
        EventData::NoAction {
            signature: Some("Spec ID Event00".into())
        }
    );
    assert_eq!(
        parsed.events[1].check_data(),
        DataCheck::Matches(DataCoverage::Whole)
    );
    let want = Sha1::new()
        .chain_update([0u8; 20])
        .chain_update(d)
        .finalize()
        .to_vec();
    assert_eq!(
        parsed.replay().unwrap().get(HashAlg::Sha1, 7),
        Some(&want[..])
    );
}

#[test]
fn variable_events_decode_and_check() {
    let secure_boot = variable_data("SecureBoot", &[1]);
    let boot_order = variable_data("BootOrder", &[1, 0, 2, 0]);
    let mut log = two_banks();
    log.extend(measured(7, VAR_DRIVER_CONFIG, &secure_boot));
    // Boot variables: firmware commonly measures only the value.
    log.extend(agile_event(
        1,
        VAR_BOOT,
        &[(4, sha1(&[1, 0, 2, 0])), (11, sha256(&[1, 0, 2, 0]))],
        &boot_order,
    ));
    // A driver-config event whose data was altered after measuring: the type is not trusted.
    let mut forged = secure_boot.clone();
    *forged.last_mut().unwrap() = 0;
    log.extend(agile_event(
        7,
        VAR_DRIVER_CONFIG,
        &[(4, sha1(&secure_boot)), (11, sha256(&secure_boot))],
        &forged,
    ));
    let parsed = EventLog::from_bytes(&log).unwrap();
    let EventData::Variable(v) = &parsed.events[1].decoded else {
        panic!()
    };
    assert_eq!(
        (v.name.as_str(), v.data.as_slice()),
        ("SecureBoot", &[1u8][..])
    );
    assert_eq!(v.vendor.to_string(), "8be4df61-93ca-11d2-aa0d-00e098032b8c");
    assert_eq!(
        parsed.events[1].check_data(),
        DataCheck::Matches(DataCoverage::Whole)
    );
    assert_eq!(
        parsed.events[2].check_data(),
        DataCheck::Matches(DataCoverage::VariableValue)
    );
    assert_eq!(
        parsed.events[3].check_data(),
        DataCheck::Mismatch(HashAlg::Sha1)
    );
}

#[test]
fn one_bank_mismatching_is_a_mismatch() {
    let mut log = two_banks();
    log.extend(agile_event(
        7,
        SEPARATOR,
        &[(4, sha1(&[0; 4])), (11, sha256(&[1; 4]))],
        &[0; 4],
    ));
    let parsed = EventLog::from_bytes(&log).unwrap();
    assert_eq!(
        parsed.events[1].check_data(),
        DataCheck::Mismatch(HashAlg::Sha256)
    );
}

#[test]
fn ipl_labels_and_files() {
    let mut log = two_banks();
    let cmd = b"grub_cmd: set root=hd0\0";
    log.extend(agile_event(
        8,
        IPL,
        &[(4, sha1(b"set root=hd0")), (11, sha256(b"set root=hd0"))],
        cmd,
    ));
    log.extend(agile_event(
        9,
        IPL,
        &[(4, vec![1; 20]), (11, vec![1; 32])],
        b"/boot/vmlinuz\0",
    ));
    let parsed = EventLog::from_bytes(&log).unwrap();
    assert_eq!(
        parsed.events[1].decoded,
        EventData::Ipl("grub_cmd: set root=hd0".into())
    );
    assert_eq!(
        parsed.events[1].check_data(),
        DataCheck::Matches(DataCoverage::TextAfterLabel("grub_cmd: "))
    );
    assert_eq!(parsed.events[2].check_data(), DataCheck::NotCheckable);
}

#[test]
fn malformed_data_is_kept_not_fatal() {
    let mut log = two_banks();
    log.extend(measured(7, SEPARATOR, &[0; 3]));
    log.extend(measured(7, VAR_DRIVER_CONFIG, &[1, 2, 3]));
    let parsed = EventLog::from_bytes(&log).unwrap();
    assert!(matches!(parsed.events[1].decoded, EventData::Malformed(_)));
    assert!(matches!(parsed.events[2].decoded, EventData::Malformed(_)));
    assert_eq!(
        parsed.events[2].event_type,
        EventType::EFI_VARIABLE_DRIVER_CONFIG
    );
    assert_eq!(
        parsed.events[2].check_data(),
        DataCheck::Matches(DataCoverage::Whole)
    );
}

#[test]
fn empty_input_is_refused() {
    assert_eq!(
        EventLog::from_bytes(&[]).unwrap_err(),
        FirmwareLogError::Empty
    );
}
