//! The shipped function library as the tests expect it, read from the files of
//! `daemon/functions/` (not from the daemon's embedded copy): names, sources, metadata,
//! measurements and the documented ids (docs/functions.md), computed here independently.

use std::path::PathBuf;

use serde_json::Value;

/// One library function as its files say.
#[derive(Debug, Clone)]
pub struct Shipped {
    /// The file name without `.rhai`.
    pub name: String,
    /// The script's bytes.
    pub source: String,
    /// `<name>.json`.
    pub metadata: Value,
    /// `sha256(source)`, hex.
    pub sha256: String,
    /// The documented id.
    pub id: String,
}

/// `daemon/functions/`.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("daemon")
        .join("functions")
}

/// The id of a library function: the first 16 bytes (hex) of
/// `sha256("arbiter/v1/library-function\0" || name || "\0" || sha256(source))`.
pub fn id(name: &str, source: &[u8]) -> String {
    let measurement = crate::sha256(&[source]);
    hex::encode(
        &crate::sha256(&[
            b"arbiter/v1/library-function\0",
            name.as_bytes(),
            b"\0",
            &measurement,
        ])[..16],
    )
}

/// Every library function, by name.
pub fn shipped() -> Vec<Shipped> {
    let mut out: Vec<Shipped> = std::fs::read_dir(dir())
        .expect("daemon/functions")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .map(|p| {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            let source = std::fs::read_to_string(&p).unwrap();
            let metadata: Value = serde_json::from_slice(
                &std::fs::read(p.with_extension("json")).expect("the metadata file"),
            )
            .expect("metadata JSON");
            Shipped {
                sha256: hex::encode(crate::sha256(&[source.as_bytes()])),
                id: id(&name, source.as_bytes()),
                name,
                source,
                metadata,
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// One library function by name.
pub fn get(name: &str) -> Shipped {
    shipped()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no library function {name}"))
}

/// The library's names, each as `function NAME` (as the measurement-log tests describe
/// `function_loaded` records).
pub fn loaded_names() -> Vec<String> {
    shipped()
        .iter()
        .map(|f| format!("function {}", f.name))
        .collect()
}
