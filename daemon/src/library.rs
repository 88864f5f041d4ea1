//! The shipped function library (docs/functions.md): the scripts of `daemon/functions/`,
//! embedded at build time by `build.rs` (every `<name>.rhai` with its `<name>.json`
//! metadata), their stable ids and measurements. The engine registers the enabled ones at
//! start ([`crate::engine::Engine::start_locked`]); `[library] disabled` in the
//! configuration names those it must not.

use serde::Deserialize;
use sha2::{Digest, Sha256};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/library.rs"));
}

/// The `registered_by` of every library function: see
/// [`arbiter_proto::api::LIBRARY_REGISTRAR`].
pub const REGISTRAR: &str = arbiter_proto::api::LIBRARY_REGISTRAR;

/// The domain separator of library function ids.
const ID_DOMAIN: &[u8] = b"arbiter/v1/library-function\0";

/// One library function, as shipped in this build.
#[derive(Debug, Clone)]
pub struct LibraryFunction {
    /// Its name: the file name without `.rhai`.
    pub name: &'static str,
    /// The script, byte for byte the file.
    pub source: &'static str,
    /// `sha256(source)`, lowercase hex: its measurement.
    pub sha256: String,
    /// Its id: see [`library_id`].
    pub id: String,
    /// What it computes (from its metadata).
    pub description: String,
    /// The JSON Schema of its `inputs` map (from its metadata).
    pub input_schema: serde_json::Value,
}

/// `<name>.json`: a library function's metadata.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    description: String,
    input_schema: serde_json::Value,
}

/// A library function's id: the first 16 bytes, as 32 lowercase hex characters, of
/// `sha256("arbiter/v1/library-function\0" || name || "\0" || sha256(source))` where
/// `sha256(source)` is the raw 32 bytes. The same source under the same name has the same
/// id on every appliance and release; a changed source has another.
pub fn library_id(name: &str, source: &str) -> String {
    let measurement = Sha256::digest(source.as_bytes());
    let mut h = Sha256::new();
    h.update(ID_DOMAIN);
    h.update(name.as_bytes());
    h.update([0u8]);
    h.update(measurement);
    hex::encode(&h.finalize()[..16])
}

/// The names of every library function in this build, sorted.
pub fn names() -> impl Iterator<Item = &'static str> {
    embedded::FILES.iter().map(|(name, _, _)| *name)
}

/// Every library function in this build, by name. Fails only on a malformed metadata file
/// (a build defect the daemon's unit tests catch), naming it.
pub fn all() -> Result<Vec<LibraryFunction>, String> {
    embedded::FILES
        .iter()
        .map(|(name, source, meta)| {
            let meta: Metadata = serde_json::from_str(meta)
                .map_err(|e| format!("library function {name}: its metadata {name}.json: {e}"))?;
            Ok(LibraryFunction {
                name,
                source,
                sha256: hex::encode(Sha256::digest(source.as_bytes())),
                id: library_id(name, source),
                description: meta.description,
                input_schema: meta.input_schema,
            })
        })
        .collect()
}

/// The library functions not named in `disabled`.
pub fn enabled(disabled: &[String]) -> Result<Vec<LibraryFunction>, String> {
    Ok(all()?
        .into_iter()
        .filter(|f| !disabled.iter().any(|d| d == f.name))
        .collect())
}

/// The names in `disabled` that no library function has, in the order given.
pub fn unknown_names(disabled: &[String]) -> Vec<String> {
    disabled
        .iter()
        .filter(|d| !names().any(|n| n == d.as_str()))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::Evaluator;

    /// How a JSON Schema's type reads in the table: `string`, `array of strings`, ...
    fn type_words(schema: &serde_json::Value) -> String {
        if let Some(choices) = schema["oneOf"].as_array().or(schema["anyOf"].as_array()) {
            return choices
                .iter()
                .map(type_words)
                .collect::<Vec<_>>()
                .join(" or ");
        }
        match schema["type"].as_str() {
            Some("array") => format!("array of {}s", type_words(&schema["items"])),
            Some(t) => t.to_owned(),
            None => "any value".to_owned(),
        }
    }

    /// The `Output:` paragraph of a script's comment block: its line and the indented
    /// lines continuing it.
    fn output_words(source: &str) -> String {
        let mut words: Vec<&str> = Vec::new();
        for line in source.lines().take_while(|l| l.starts_with("//")) {
            let text = line.trim_start_matches('/');
            if let Some(first) = text.trim().strip_prefix("Output:") {
                words.push(first.trim());
            } else if !words.is_empty() && text.starts_with("   ") && !text.trim().is_empty() {
                words.push(text.trim());
            } else if !words.is_empty() {
                break;
            }
        }
        if words.is_empty() {
            "see the script's comment".to_owned()
        } else {
            words.join(" ")
        }
    }

    /// The library table of docs/functions.md as the files of `daemon/functions/` say it.
    fn expected_table(all: &[LibraryFunction]) -> String {
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        let mut out = String::from(
            "| Name | Description | Inputs | Output | sha256 (measurement) | id |\n\
             |---|---|---|---|---|---|\n",
        );
        for f in all {
            let schema = &f.input_schema;
            let mut inputs: Vec<String> = Vec::new();
            for key in ["properties", "patternProperties"] {
                if let Some(p) = schema[key].as_object() {
                    inputs.extend(
                        p.iter()
                            .map(|(slot, s)| format!("`{slot}`: {}", type_words(s))),
                    );
                }
            }
            if inputs.is_empty() && schema["additionalProperties"].is_object() {
                inputs.push(format!(
                    "any slots, each: {}",
                    type_words(&schema["additionalProperties"])
                ));
            } else if inputs.is_empty() {
                inputs.push("any slots, any values".to_owned());
            }
            out.push_str(&format!(
                "| `{}` | {} | {} | {} | `{}` | `{}` |\n",
                f.name,
                cell(&f.description),
                cell(&inputs.join("; ")),
                cell(&output_words(f.source)),
                f.sha256,
                f.id
            ));
        }
        out
    }

    /// docs/functions.md lists exactly the shipped functions with their true measurements
    /// and ids (the published values parties check against).
    #[test]
    fn docs_functions_md_lists_the_library_with_true_measurements_and_ids() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/functions.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let begin = "<!-- library-table:begin -->\n";
        let end = "<!-- library-table:end -->";
        let start = doc.find(begin).map(|i| i + begin.len());
        let stop = doc.find(end);
        let table = match (start, stop) {
            (Some(a), Some(b)) if a <= b => &doc[a..b],
            _ => "",
        };
        let expected = expected_table(&all().unwrap());
        assert!(
            table == expected,
            "docs/functions.md's library table (between {begin:?} and {end:?}) does not \
             match daemon/functions/; the table should read:\n\n{expected}"
        );
    }

    #[test]
    fn every_library_function_has_metadata_compiles_and_has_a_stable_id() {
        let all = all().unwrap();
        assert!(all.iter().any(|f| f.name == "sha256-concat"));
        assert!(all.iter().any(|f| f.name == "psi-count"));
        for f in &all {
            Evaluator::check_script(f.source)
                .unwrap_or_else(|e| panic!("{} does not compile: {e}", f.name));
            assert!(!f.description.trim().is_empty(), "{}", f.name);
            assert_eq!(f.input_schema["type"], "object", "{}", f.name);
            assert!(
                f.source.starts_with("//"),
                "{} starts with its comment block",
                f.name
            );
            assert_eq!(f.id.len(), 32);
            assert!(
                f.id.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            );
        }
        // The id is the documented derivation, computed independently here.
        let mut pre = b"arbiter/v1/library-function\0psi-count\0".to_vec();
        pre.extend_from_slice(&Sha256::digest(b"x"));
        assert_eq!(
            library_id("psi-count", "x"),
            hex::encode(&Sha256::digest(&pre)[..16])
        );
        assert_ne!(library_id("psi-count", "x"), library_id("psi-count", "y"));
        assert_ne!(library_id("psi-count", "x"), library_id("psi-coun", "x"));
    }

    #[test]
    fn unknown_disabled_names_are_found() {
        let asked = vec!["psi-count".to_owned(), "nope".to_owned()];
        assert_eq!(unknown_names(&asked), ["nope"]);
        let enabled = enabled(&asked).unwrap();
        assert!(enabled.iter().all(|f| f.name != "psi-count"));
        assert!(enabled.iter().any(|f| f.name == "sha256-concat"));
    }
}
