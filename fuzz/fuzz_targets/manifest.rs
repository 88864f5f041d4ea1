//! Fuzz the manifest parser of arbiter-policy (JSON, and TOML converted to JSON): any
//! bytes must be accepted or refused with problems, never a panic. Beyond that: the
//! validating walk and the typed parser must agree (a manifest the walk accepts always
//! becomes a typed `Manifest`), the digest is of the JSON as submitted, and a typed
//! manifest serialises to JSON that validates to the same manifest.
#![no_main]

use arbiter_policy::manifest::{Manifest, ManifestProblem, manifest_sha256};
use libfuzzer_sys::fuzz_target;

fn check(result: Result<arbiter_policy::manifest::ValidatedManifest, Vec<ManifestProblem>>) {
    match result {
        Ok(valid) => {
            assert_eq!(valid.sha256(), manifest_sha256(valid.raw()));
            let typed = serde_json::to_value(valid.manifest()).expect("serialises");
            let again = Manifest::from_json_value(typed).expect("a typed manifest re-validates");
            assert_eq!(again.manifest(), valid.manifest());
        }
        Err(problems) => {
            assert!(!problems.is_empty());
            for p in &problems {
                assert!(
                    !p.reason.starts_with("invalid manifest:"),
                    "the walk accepted what the typed parser refused: {p}"
                );
                assert!(p.pointer.is_empty() || p.pointer.starts_with('/'));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(Manifest::from_json_bytes(data));
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(json) = Manifest::toml_to_json(text)
    {
        check(Manifest::from_json_value(json));
    }
});
