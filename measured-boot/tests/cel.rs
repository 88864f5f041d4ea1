//! The measurement log: the record shape of docs/protocol.md, the digest rule against digests
//! computed
//! by an independent implementation (Python's `json.dumps(sort_keys=True)` + `hashlib`), strict
//! parsing, the JSON Lines reader's torn-tail reporting, verification against a PCR and the
//! write-ahead rule.

use arbiter_measured_boot::cel::{
    Base64Bytes, DaemonStarted, EpochReset, EventContent, FunctionLoaded, HexBytes, Id,
    InstanceCreated, InstanceDestroyed, Record, Sha256Digest, TlsKeyReplaced, TornReason,
    WriteAheadState, parse_json_array, read_jsonl, replay, to_json_array, to_jsonl_line,
    verify_against_pcr, write_ahead_state,
};
use arbiter_measured_boot::{CelError, VerifyError};
use serde_json::json;

const PCR: u32 = 23;

fn daemon_started() -> EventContent {
    EventContent::DaemonStarted(DaemonStarted {
        version: "0.1.0".into(),
        executable_sha256: Sha256Digest([0x33; 32]),
        generation: 7,
        platform_pcrs: vec![0, 2, 4, 7, 9],
        sealing_nv_public: Base64Bytes((0..10).collect()),
        sealing_nv_name: HexBytes([&[0x00, 0x0b][..], &[0x11; 32]].concat()),
        statement_key_name: HexBytes([&[0x00, 0x0b][..], &[0x22; 32]].concat()),
        reset_count: 3,
        restart_count: 1,
        boot_id: "1b4e28ba-2fa1-11d2-883f-0016d3cca427".into(),
    })
}

fn function_loaded(sha: u8) -> EventContent {
    EventContent::FunctionLoaded(FunctionLoaded {
        function_id: Id([0xcd; 16]),
        name: "mean".into(),
        sha256: Sha256Digest([sha; 32]),
    })
}

fn instance_created() -> EventContent {
    EventContent::InstanceCreated(InstanceCreated {
        instance_id: Id([0xab; 16]),
        manifest_sha256: Sha256Digest([1; 32]),
        public_key_sha256: Sha256Digest([2; 32]),
    })
}

/// A well-formed log of `n` records.
#[allow(clippy::unwrap_used)] // test helper: a failure here is a test failure
fn log(n: usize) -> Vec<Record> {
    let contents = [
        daemon_started(),
        function_loaded(3),
        instance_created(),
        EventContent::InstanceDestroyed(InstanceDestroyed {
            instance_id: Id([0xab; 16]),
            epoch_retired: 4,
        }),
        EventContent::TlsKeyReplaced(TlsKeyReplaced {
            tls_spki_sha256: Sha256Digest([5; 32]),
        }),
    ];
    (0..n)
        .map(|i| Record::new(i as u64, PCR, contents[i % contents.len()].clone()).unwrap())
        .collect()
}

#[allow(clippy::unwrap_used)] // test helper: a failure here is a test failure
fn hex32(s: &str) -> [u8; 32] {
    hex::decode(s).unwrap().try_into().unwrap()
}

#[test]
fn digests_equal_an_independent_jcs_implementation() {
    let cases = [
        (
            daemon_started(),
            "7ed11fa92c603e4d988291a9230d15fa0b8e4df83f2233f523a843074263d7de",
        ),
        (
            EventContent::EpochReset(EpochReset {
                epoch: 2,
                unrecoverable: vec![Id([0; 16]), Id([0xff; 16])],
            }),
            "9a4b31ddf125f7ee430d1bc4c76a6d7e6ad604635dffedcad998f7e1e4ba2b66",
        ),
        (
            instance_created(),
            "f80da14077623d2f48e370d36b0e109a3db4eccbcbfb6d9523526364d59cac0a",
        ),
    ];
    for (content, want) in cases {
        assert_eq!(
            content.digest().unwrap().0,
            hex32(want),
            "{}",
            content.event_name()
        );
    }
    assert_eq!(
        String::from_utf8(daemon_started().canonical_json().unwrap()).unwrap(),
        r#"{"boot_id":"1b4e28ba-2fa1-11d2-883f-0016d3cca427","event":"daemon_started","executable_sha256":"3333333333333333333333333333333333333333333333333333333333333333","generation":7,"platform_pcrs":[0,2,4,7,9],"reset_count":3,"restart_count":1,"sealing_nv_name":"000b1111111111111111111111111111111111111111111111111111111111111111","sealing_nv_public":"AAECAwQFBgcICQ==","statement_key_name":"000b2222222222222222222222222222222222222222222222222222222222222222","version":"0.1.0"}"#
    );
}

#[test]
fn function_loaded_digest_is_the_measurement_as_is() {
    let r = Record::new(1, PCR, function_loaded(9)).unwrap();
    assert_eq!(r.digest, Sha256Digest([9; 32]));
    assert!(r.digest_matches());
    let mut wrong = r.clone();
    wrong.digest = Sha256Digest([8; 32]);
    assert!(!wrong.digest_matches());
}

#[test]
fn record_json_has_exactly_the_spec_shape() {
    let r = Record::new(0, PCR, instance_created()).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        json!({
            "recnum": 0,
            "pcr": 23,
            "digests": [{"hashAlg": "sha256", "digest": "f80da14077623d2f48e370d36b0e109a3db4eccbcbfb6d9523526364d59cac0a"}],
            "content_type": "arbiter",
            "content": {
                "event": "instance_created",
                "instance_id": "abababababababababababababababab",
                "manifest_sha256": "0101010101010101010101010101010101010101010101010101010101010101",
                "public_key_sha256": "0202020202020202020202020202020202020202020202020202020202020202"
            }
        })
    );
}

fn parse(v: serde_json::Value) -> Result<Record, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[test]
fn parsing_is_strict() {
    let good = serde_json::to_value(Record::new(0, PCR, instance_created()).unwrap()).unwrap();
    assert!(parse(good.clone()).is_ok());
    type Mutation = dyn Fn(&mut serde_json::Value);
    let mutate = |f: &Mutation| {
        let mut v = good.clone();
        f(&mut v);
        parse(v)
    };
    let cases: [(&str, &Mutation); 11] = [
        ("uppercase hex", &|v| {
            v["content"]["instance_id"] = json!("ABABABABABABABABABABABABABABABAB")
        }),
        ("short id", &|v| v["content"]["instance_id"] = json!("abab")),
        ("unknown content field", &|v| {
            v["content"]["extra"] = json!(1)
        }),
        ("unknown record field", &|v| v["extra"] = json!(1)),
        ("unknown event", &|v| {
            v["content"]["event"] = json!("instance_hijacked")
        }),
        ("missing field", &|v| {
            v["content"]
                .as_object_mut()
                .unwrap()
                .remove("manifest_sha256");
        }),
        ("sha1 digest", &|v| {
            v["digests"][0]["hashAlg"] = json!("sha1")
        }),
        ("two digests", &|v| {
            let d = v["digests"][0].clone();
            v["digests"].as_array_mut().unwrap().push(d);
        }),
        ("no digest", &|v| v["digests"] = json!([])),
        ("content_type", &|v| v["content_type"] = json!("systemd")),
        ("recnum beyond 2^53", &|v| v["recnum"] = json!(1u64 << 53)),
    ];
    for (what, f) in cases {
        assert!(mutate(f).is_err(), "{what} was accepted");
    }
    let mut ds = serde_json::to_value(Record::new(0, PCR, daemon_started()).unwrap()).unwrap();
    ds["content"]["sealing_nv_public"] = json!("AAECAwQFBgcICR==");
    assert!(
        parse(ds.clone()).is_err(),
        "non-canonical base64 (trailing bits)"
    );
    ds["content"]["sealing_nv_public"] = json!("AAECAwQFBgcICQ");
    assert!(parse(ds.clone()).is_err(), "unpadded base64");
    ds["content"]["generation"] = json!(1.0);
    assert!(parse(ds).is_err(), "float");
}

#[test]
fn integers_jcs_cannot_represent_are_refused_when_building() {
    let content = EventContent::EpochReset(EpochReset {
        epoch: u64::MAX,
        unrecoverable: vec![],
    });
    assert_eq!(
        Record::new(0, PCR, content).unwrap_err(),
        CelError::IntegerTooLarge {
            field: "epoch",
            value: u64::MAX
        }
    );
    assert!(matches!(
        Record::new(1 << 53, PCR, instance_created()),
        Err(CelError::IntegerTooLarge {
            field: "recnum",
            ..
        })
    ));
}

#[allow(clippy::unwrap_used)] // test helper: a failure here is a test failure
fn jsonl(records: &[Record]) -> Vec<u8> {
    records
        .iter()
        .flat_map(|r| to_jsonl_line(r).unwrap())
        .collect()
}

#[test]
fn reader_keeps_complete_records_and_reports_a_torn_tail() {
    let records = log(3);
    let bytes = jsonl(&records);
    let read = read_jsonl(&bytes).unwrap();
    assert_eq!((read.records.as_slice(), read.torn), (&records[..], None));

    // Cut inside the last record.
    let last_start = bytes.len() - to_jsonl_line(&records[2]).unwrap().len();
    let read = read_jsonl(&bytes[..bytes.len() - 10]).unwrap();
    assert_eq!(read.records, records[..2]);
    let torn = read.torn.unwrap();
    assert_eq!(
        (torn.line, torn.offset, torn.len),
        (2, last_start, bytes.len() - 10 - last_start)
    );
    assert!(matches!(torn.reason, TornReason::Unparseable(_)));

    // Only the newline missing: complete JSON, still not a complete record.
    let read = read_jsonl(&bytes[..bytes.len() - 1]).unwrap();
    assert_eq!(read.records, records[..2]);
    assert_eq!(read.torn.unwrap().reason, TornReason::NoNewline);

    // A garbage last line with its newline.
    let mut garbage = bytes.clone();
    garbage.extend(b"\0\0\0\n");
    let read = read_jsonl(&garbage).unwrap();
    assert_eq!(read.records, records);
    assert_eq!(read.torn.unwrap().line, 3);

    assert_eq!(read_jsonl(b"").unwrap(), Default::default());
}

#[test]
fn a_bad_line_before_the_last_is_corruption() {
    let records = log(3);
    let first = to_jsonl_line(&records[0]).unwrap();
    let mut bytes = first.clone();
    bytes.extend(b"{\"recnum\":\n");
    bytes.extend(to_jsonl_line(&records[2]).unwrap());
    assert!(matches!(
        read_jsonl(&bytes).unwrap_err(),
        CelError::CorruptLine { line: 1, offset, .. } if offset == first.len()
    ));
}

#[test]
fn json_array_round_trip() {
    let records = log(4);
    assert_eq!(
        parse_json_array(&to_json_array(&records).unwrap()).unwrap(),
        records
    );
    assert!(matches!(
        parse_json_array(b"[{}]"),
        Err(CelError::BadArray { .. })
    ));
}

#[test]
fn verify_accepts_the_replay_of_the_whole_log() {
    let records = log(5);
    verify_against_pcr(&records, PCR, &replay(&records)).unwrap();
    verify_against_pcr(&[], PCR, &[0; 32]).unwrap();
}

#[test]
fn verify_names_the_first_record_whose_digest_is_wrong() {
    let mut records = log(5);
    let pcr = replay(&records);
    if let EventContent::InstanceCreated(c) = &mut records[2].content {
        c.manifest_sha256 = Sha256Digest([0xee; 32]);
    }
    records[4].digest = Sha256Digest([0; 32]);
    assert_eq!(
        verify_against_pcr(&records, PCR, &pcr).unwrap_err(),
        VerifyError::DigestMismatch {
            index: 2,
            recnum: 2,
            event: "instance_created"
        }
    );
}

#[test]
fn verify_checks_sequence_and_pcr_index() {
    let mut records = log(3);
    let pcr = replay(&records);
    assert_eq!(
        verify_against_pcr(&records, 16, &pcr).unwrap_err(),
        VerifyError::WrongPcr {
            index: 0,
            pcr: PCR,
            expected: 16
        }
    );
    records.swap(1, 2);
    assert_eq!(
        verify_against_pcr(&records, PCR, &pcr).unwrap_err(),
        VerifyError::RecnumOutOfSequence {
            index: 1,
            recnum: 2
        }
    );
}

#[test]
fn verify_reports_prefix_no_prefix_and_all_zero() {
    let records = log(5);
    assert_eq!(
        verify_against_pcr(&records, PCR, &replay(&records[..3])).unwrap_err(),
        VerifyError::PrefixOnly {
            matched: 3,
            total: 5
        }
    );
    let longer = log(6);
    assert_eq!(
        verify_against_pcr(&records, PCR, &replay(&longer)).unwrap_err(),
        VerifyError::NoPrefixMatches { total: 5 }
    );
    assert_eq!(
        verify_against_pcr(&records, PCR, &[0; 32]).unwrap_err(),
        VerifyError::PcrAllZero { total: 5 }
    );
    assert_eq!(
        verify_against_pcr(&[], PCR, &replay(&records)).unwrap_err(),
        VerifyError::NoPrefixMatches { total: 0 }
    );
}

#[test]
fn write_ahead_rule() {
    let records = log(5);
    assert_eq!(
        write_ahead_state(&records, PCR, &replay(&records)).unwrap(),
        WriteAheadState::Consistent
    );
    assert_eq!(
        write_ahead_state(&records, PCR, &replay(&records[..4])).unwrap(),
        WriteAheadState::ExtendNext { index: 4 }
    );
    assert_eq!(
        write_ahead_state(&records[..1], PCR, &[0; 32]).unwrap(),
        WriteAheadState::ExtendNext { index: 0 }
    );
    assert_eq!(
        write_ahead_state(&records, PCR, &replay(&records[..3])).unwrap_err(),
        VerifyError::PrefixOnly {
            matched: 3,
            total: 5
        }
    );
    assert_eq!(
        write_ahead_state(&records, PCR, &[0; 32]).unwrap_err(),
        VerifyError::PcrAllZero { total: 5 }
    );
    assert_eq!(
        write_ahead_state(&records, PCR, &[1; 32]).unwrap_err(),
        VerifyError::NoPrefixMatches { total: 5 }
    );
    assert_eq!(
        write_ahead_state(&[], PCR, &[0; 32]).unwrap(),
        WriteAheadState::Consistent
    );
}

#[test]
fn extending_the_next_record_makes_the_log_consistent() {
    // The daemon's start-up loop, simulated: PCR behind by one, extend, consistent.
    let records = log(4);
    let mut pcr = replay(&records[..3]);
    let WriteAheadState::ExtendNext { index } = write_ahead_state(&records, PCR, &pcr).unwrap()
    else {
        panic!("expected one record ahead");
    };
    pcr = arbiter_measured_boot::alg::sha256_extend(&pcr, &records[index].digest.0);
    assert_eq!(
        write_ahead_state(&records, PCR, &pcr).unwrap(),
        WriteAheadState::Consistent
    );
}
