//! Fuzz the measurement-log readers (JSON Lines and JSON array): any bytes must read or be
//! refused without panicking; every record read must re-serialise to a line that reads back
//! as the same record, and verification must return an answer.
#![no_main]

use arbiter_measured_boot::cel::{
    parse_json_array, read_jsonl, replay, to_jsonl_line, verify_against_pcr, write_ahead_state,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(read) = read_jsonl(data) {
        for record in &read.records {
            let line = to_jsonl_line(record).expect("a parsed record re-serialises");
            let back = read_jsonl(&line).expect("its line reads back");
            assert_eq!(back.records.as_slice(), std::slice::from_ref(record));
            assert!(back.torn.is_none());
            let _ = record.digest_matches();
        }
        let pcr = replay(&read.records);
        let _ = verify_against_pcr(&read.records, 23, &pcr);
        let _ = write_ahead_state(&read.records, 23, &pcr);
    }
    let _ = parse_json_array(data);
});
