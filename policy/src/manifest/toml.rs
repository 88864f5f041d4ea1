//! TOML manifests (the CLI's convenience form) converted to the JSON that is submitted
//! and hashed: tables become objects, datetimes RFC 3339 strings, and floats — which no
//! manifest may hold — are refused at their pointers.

use serde_json::{Map, Value};

use super::ManifestProblem;
use super::validate::pointer;

/// Converts TOML text to a JSON value; see [`super::Manifest::toml_to_json`].
pub(super) fn to_json(text: &str) -> Result<Value, Vec<ManifestProblem>> {
    let table: ::toml::Table = text.parse().map_err(|e: ::toml::de::Error| {
        vec![ManifestProblem::new(
            "",
            format!("malformed TOML: {}", e.message()),
        )]
    })?;
    let mut problems = Vec::new();
    let value = table_to_json("", table, &mut problems);
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems)
    }
}

fn table_to_json(at: &str, table: ::toml::Table, problems: &mut Vec<ManifestProblem>) -> Value {
    let mut map = Map::new();
    for (key, value) in table {
        let here = pointer(at, &key);
        map.insert(key, to_value(&here, value, problems));
    }
    Value::Object(map)
}

fn to_value(at: &str, value: ::toml::Value, problems: &mut Vec<ManifestProblem>) -> Value {
    match value {
        ::toml::Value::String(s) => Value::String(s),
        ::toml::Value::Integer(i) => Value::from(i),
        ::toml::Value::Boolean(b) => Value::Bool(b),
        ::toml::Value::Float(f) => {
            problems.push(ManifestProblem::new(
                at,
                format!("{f} is a float: manifest numbers are integers"),
            ));
            Value::Null
        }
        ::toml::Value::Datetime(dt) => {
            if dt.date.is_none() || dt.time.is_none() || dt.offset.is_none() {
                problems.push(ManifestProblem::new(
                    at,
                    format!("{dt} is not a full date and time with an offset (use e.g. 2026-10-01T00:00:00Z)"),
                ));
            }
            Value::String(dt.to_string())
        }
        ::toml::Value::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_value(&format!("{at}/{i}"), item, problems))
                .collect(),
        ),
        ::toml::Value::Table(table) => table_to_json(at, table, problems),
    }
}
