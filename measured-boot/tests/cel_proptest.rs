//! Property tests for the measurement log: any record the daemon can build survives the JSON
//! Lines and JSON array encodings unchanged with its digest still matching; its canonical JSON
//! equals RFC 8785 applied to the generic JSON value; and cutting a log anywhere loses only the
//! torn last record.

use arbiter_measured_boot::cel::{
    Base64Bytes, DaemonStarted, EpochReset, EventContent, FunctionLoaded, HexBytes, Id,
    InstanceCreated, InstanceDestroyed, MAX_SAFE_INTEGER, Record, Sha256Digest, TlsKeyReplaced,
    parse_json_array, read_jsonl, replay, to_json_array, to_jsonl_line, verify_against_pcr,
};
use proptest::prelude::*;

fn digest() -> impl Strategy<Value = Sha256Digest> {
    any::<[u8; 32]>().prop_map(Sha256Digest)
}
fn id() -> impl Strategy<Value = Id> {
    any::<[u8; 16]>().prop_map(Id)
}
fn safe() -> impl Strategy<Value = u64> {
    0..=MAX_SAFE_INTEGER
}

fn content() -> impl Strategy<Value = EventContent> {
    prop_oneof![
        (
            ".*",
            safe(),
            prop::collection::vec(0u32..24, 0..8),
            prop::collection::vec(any::<u8>(), 0..64),
            prop::collection::vec(any::<u8>(), 0..40),
            prop::collection::vec(any::<u8>(), 0..40),
            any::<u32>(),
            any::<u32>(),
            ".*",
            any::<[u8; 32]>(),
        )
            .prop_map(
                |(version, generation, pcrs, nvp, nvn, skn, reset, restart, boot, exe)| {
                    EventContent::DaemonStarted(DaemonStarted {
                        version,
                        executable_sha256: Sha256Digest(exe),
                        generation,
                        platform_pcrs: pcrs,
                        sealing_nv_public: Base64Bytes(nvp),
                        sealing_nv_name: HexBytes(nvn),
                        statement_key_name: HexBytes(skn),
                        reset_count: reset,
                        restart_count: restart,
                        boot_id: boot,
                    })
                }
            ),
        (id(), ".*", digest()).prop_map(|(function_id, name, sha256)| {
            EventContent::FunctionLoaded(FunctionLoaded {
                function_id,
                name,
                sha256,
            })
        }),
        (id(), digest(), digest()).prop_map(|(instance_id, m, p)| {
            EventContent::InstanceCreated(InstanceCreated {
                instance_id,
                manifest_sha256: m,
                public_key_sha256: p,
            })
        }),
        (id(), safe()).prop_map(|(instance_id, epoch_retired)| {
            EventContent::InstanceDestroyed(InstanceDestroyed {
                instance_id,
                epoch_retired,
            })
        }),
        (safe(), prop::collection::vec(id(), 0..5)).prop_map(|(epoch, unrecoverable)| {
            EventContent::EpochReset(EpochReset {
                epoch,
                unrecoverable,
            })
        }),
        digest().prop_map(|d| EventContent::TlsKeyReplaced(TlsKeyReplaced { tls_spki_sha256: d })),
    ]
}

#[allow(clippy::unwrap_used)] // test helper: a failure here is a test failure
fn records() -> impl Strategy<Value = Vec<Record>> {
    prop::collection::vec(content(), 0..8).prop_map(|cs| {
        cs.into_iter()
            .enumerate()
            .map(|(i, c)| Record::new(i as u64, 23, c).unwrap())
            .collect()
    })
}

proptest! {
    #[test]
    fn jsonl_round_trip(records in records()) {
        let bytes: Vec<u8> = records.iter().flat_map(|r| to_jsonl_line(r).unwrap()).collect();
        let read = read_jsonl(&bytes).unwrap();
        prop_assert_eq!(&read.records, &records);
        prop_assert!(read.torn.is_none());
        prop_assert!(read.records.iter().all(Record::digest_matches));
        prop_assert!(verify_against_pcr(&read.records, 23, &replay(&records)).is_ok());
    }

    #[test]
    fn array_round_trip(records in records()) {
        prop_assert_eq!(parse_json_array(&to_json_array(&records).unwrap()).unwrap(), records);
    }

    #[test]
    fn canonical_json_is_jcs_of_the_generic_value(c in content()) {
        let value = serde_json::to_value(&c).unwrap();
        prop_assert_eq!(c.canonical_json().unwrap(), serde_jcs::to_vec(&value).unwrap());
        let back: EventContent = serde_json::from_value(value).unwrap();
        prop_assert_eq!(back, c);
    }

    #[test]
    fn a_cut_log_keeps_every_complete_record(records in records(), cut in any::<prop::sample::Index>()) {
        let lines: Vec<Vec<u8>> = records.iter().map(|r| to_jsonl_line(r).unwrap()).collect();
        let bytes = lines.concat();
        let cut = cut.index(bytes.len() + 1);
        let read = read_jsonl(&bytes[..cut]).unwrap();
        let mut end = 0;
        let complete = lines.iter().take_while(|l| { end += l.len(); end <= cut }).count();
        prop_assert_eq!(&read.records[..], &records[..complete]);
        let at_boundary = lines.iter().scan(0, |s, l| { *s += l.len(); Some(*s) }).any(|e| e == cut) || cut == 0;
        prop_assert_eq!(read.torn.is_none(), at_boundary);
    }
}
