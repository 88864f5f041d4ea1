//! Fuzz the firmware event log parser: any bytes must parse or be refused with an error, and
//! whatever parses must replay (or fail to), check every event's data and render for `show`,
//! without panicking.
#![no_main]

use arbiter_measured_boot::firmware::EventLog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = EventLog::from_bytes(data) {
        let _ = log.replay();
        for event in &log.events {
            let _ = event.check_data();
            let _ = event.decoded.to_string();
            let _ = event.event_type.to_string();
        }
        // Re-parsing the same bytes is deterministic.
        assert_eq!(EventLog::from_bytes(data).ok(), Some(log));
    }
});
