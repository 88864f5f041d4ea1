//! The documents that promise something name the tests that show it, and those tests
//! exist. `docs/threat-model.md` and `docs/reliability.md` cite tests as backticked
//! `` `path/to/file.rs::test_name` `` (the path from the repository's root); each must be a
//! file of the repository holding `fn test_name`. In the threat model, every point of
//! "What a party can check" and "What it does not give", and every sentence group of
//! "Process hygiene", must name at least one test or say that it is not tested.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::path::{Path, PathBuf};

/// The repository's root (this crate is `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every backticked `file.rs::name` reference in `text`, as (file, name).
fn references(text: &str) -> Vec<(String, String)> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|code| {
            let (file, name) = code.split_once(".rs::")?;
            let plausible = !file.is_empty()
                && !name.is_empty()
                && file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_-.".contains(c))
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            plausible.then(|| (format!("{file}.rs"), name.to_owned()))
        })
        .collect()
}

/// The references of `doc` that do not name an existing test function.
fn missing(doc: &str) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(root().join(doc)).unwrap();
    let refs = references(&text);
    let mut bad = Vec::new();
    for (file, name) in &refs {
        let Ok(source) = std::fs::read_to_string(root().join(file)) else {
            bad.push(format!("{doc}: `{file}::{name}`: no such file"));
            continue;
        };
        let defined = source.match_indices(&format!("fn {name}")).any(|(at, m)| {
            source[at + m.len()..]
                .chars()
                .next()
                .is_some_and(|c| c == '(' || c == '<')
        });
        if !defined {
            bad.push(format!("{doc}: `{file}::{name}`: no `fn {name}` in {file}"));
        }
    }
    (refs.len(), bad)
}

#[test]
fn every_test_the_threat_model_and_reliability_docs_name_exists() {
    let mut bad = Vec::new();
    for doc in ["docs/threat-model.md", "docs/reliability.md"] {
        let (count, missing) = missing(doc);
        println!("{doc}: {count} test references");
        bad.extend(missing);
        if count < 10 {
            bad.push(format!("{doc} names only {count} tests"));
        }
    }
    assert!(
        bad.is_empty(),
        "tests named but not found:\n{}",
        bad.join("\n")
    );
}

/// The text of the `## title` section of `text`.
fn section<'a>(text: &'a str, title: &str) -> &'a str {
    let start = text
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("no section {title:?}"));
    let body = &text[start + title.len() + 5..];
    &body[..body.find("\n## ").unwrap_or(body.len())]
}

/// The top-level points (`- ` bullets with their continuation lines) of a section.
fn points(section: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in section.lines() {
        if let Some(rest) = line.strip_prefix("- ") {
            out.push(rest.to_owned());
        } else if line.starts_with("  ")
            && let Some(last) = out.last_mut()
        {
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    out
}

fn names_a_test_or_says_untested(point: &str) -> bool {
    !references(point).is_empty() || point.to_lowercase().contains("not tested")
}

#[test]
fn every_point_of_the_threat_model_names_a_test_or_says_it_is_untested() {
    let text = std::fs::read_to_string(root().join("docs/threat-model.md")).unwrap();
    let mut bad = Vec::new();
    for title in ["What a party can check", "What it does not give"] {
        let points = points(section(&text, title));
        assert!(points.len() >= 4, "{title}: only {} points", points.len());
        for p in points {
            if !names_a_test_or_says_untested(&p) {
                bad.push(format!("{title}: {p}"));
            }
        }
    }
    // Process hygiene is prose: each of its claims ends in a parenthesis naming tests, so
    // the text between two consecutive references holds no further claim.
    let hygiene = section(&text, "Process hygiene").replace('\n', " ");
    let chunks: Vec<&str> = hygiene.split(". ").collect();
    let mut pending = String::new();
    for chunk in chunks {
        pending.push_str(chunk);
        pending.push_str(". ");
        if names_a_test_or_says_untested(&pending) {
            pending.clear();
        }
    }
    if pending.chars().any(char::is_alphanumeric) {
        bad.push(format!("Process hygiene: {}", pending.trim()));
    }
    assert!(
        bad.is_empty(),
        "claims that name no test and do not say they are untested:\n{}",
        bad.join("\n")
    );
}
