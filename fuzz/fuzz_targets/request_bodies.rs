//! Fuzz the parsing of every API request body, exactly as the daemon parses it (the wire
//! contract in arbiter-proto, without building the daemon): any bytes are accepted or
//! refused, never a panic. Beyond that: a body accepted once is accepted again after a
//! round trip through its type's serialization, to the same value.
#![no_main]

use arbiter_proto::api::{
    ActivateCredential, CreateInstance, RegisterFunction, SubmitInput, parse_request,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trips<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(body) = parse_request::<T>(data) {
        let again = serde_json::to_vec(&body).expect("a parsed body serializes");
        assert_eq!(parse_request::<T>(&again).ok().as_ref(), Some(&body));
    }
}

fuzz_target!(|data: &[u8]| {
    round_trips::<RegisterFunction>(data);
    round_trips::<CreateInstance>(data);
    round_trips::<SubmitInput>(data);
    if let Ok(request) = ActivateCredential::from_body(data) {
        let again = serde_json::to_vec(&request).expect("a parsed body serializes");
        assert_eq!(ActivateCredential::from_body(&again).ok(), Some(request));
    }
});
