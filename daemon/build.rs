//! Embeds the shipped function library: every `functions/<name>.rhai` with its
//! `functions/<name>.json` metadata becomes an entry of the table `library.rs` in `OUT_DIR`
//! (included by `src/library.rs`), so adding a function is adding its two files.

use std::error::Error;
use std::fmt::Write as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("functions");
    // The folder's own change (a file added or removed) and each file's.
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        println!("cargo:rerun-if-changed={}", path.display());
        if path.extension().is_some_and(|e| e == "rhai") {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .ok_or_else(|| format!("{}: the name is not UTF-8", path.display()))?
                .to_owned();
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid {
                return Err(format!(
                    "{}: a library function's name is 1 to 64 of a-z, 0-9 and -",
                    path.display()
                )
                .into());
            }
            let meta = dir.join(format!("{name}.json"));
            if !meta.is_file() {
                return Err(format!(
                    "{} has no metadata {} (description and input_schema)",
                    path.display(),
                    meta.display()
                )
                .into());
            }
            names.push((name, path, meta));
        }
    }
    names.sort();
    let mut out = String::from(
        "/// Every library function: (name, source, metadata JSON), by name.\n\
         pub(crate) const FILES: &[(&str, &str, &str)] = &[\n",
    );
    for (name, script, meta) in &names {
        writeln!(
            out,
            "    ({name:?}, include_str!({:?}), include_str!({:?})),",
            script.display().to_string(),
            meta.display().to_string()
        )?;
    }
    out.push_str("];\n");
    std::fs::write(
        PathBuf::from(std::env::var("OUT_DIR")?).join("library.rs"),
        out,
    )?;
    Ok(())
}
