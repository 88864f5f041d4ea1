//! Test-only: the functions a script can call, from the engine's own metadata, checked
//! against a deny list of anything that reaches outside the evaluation (clock, sleep,
//! files, environment, processes, network, unseeded randomness, `eval`, modules).
//!
//! A deny list, not a pinned list: new pure helpers need no change here. The few denied
//! names that exist on purpose are stubs that fail with a clear message; each of their
//! overloads is called to prove the stub, not Rhai's original, answers.

use std::collections::BTreeSet;

use super::Limits;
use super::script::{self, ScriptFailure};
use crate::eval::EvalFailure;

/// Names no script may call, exactly.
const DENIED: &[&str] = &[
    "timestamp",
    "elapsed",
    "now",
    "sleep",
    "eval",
    "import",
    "export",
    "open",
    "read",
    "read_file",
    "write_file",
    "file",
    "env",
    "getenv",
    "set_env",
    "system",
    "exec",
    "spawn",
    "command",
    "socket",
    "connect",
    "http",
    "fetch",
    "random",
    "rand",
    "random_int",
    "random_float",
    "random_bool",
    "shuffle",
    "sample",
];

/// Name fragments no script function may contain.
const DENIED_FRAGMENTS: &[&str] = &[
    "time", "clock", "sleep", "file", "env", "exec", "process", "socket", "rand", "eval",
];

/// Denied names present as stubs that fail, with the text their error must contain, and
/// a call of each overload (without a seeded RNG).
const STUBS: &[(&str, &str, &[&str])] = &[
    (
        "sleep",
        "scripts have no clock",
        &["sleep(1)", "sleep(0.5)"],
    ),
    (
        "random_int",
        "no seeded RNG",
        &["random_int(1, 6)", "Fn(\"random_int\").call(1, 6)"],
    ),
    ("random_float", "no seeded RNG", &["random_float()"]),
];

/// Every callable name of an engine without a seeded RNG, sorted, with how many
/// signatures each has.
fn callable_names() -> (BTreeSet<String>, Vec<String>) {
    let engine = script::build_engine(&Limits::default(), None, None);
    let signatures = engine.gen_fn_signatures(true);
    let names = signatures
        .iter()
        .map(|s| {
            let name = s.split('(').next().unwrap_or(s).trim();
            // Property accessors: `get$len`, `set$tag`.
            name.rsplit('$').next().unwrap_or(name).to_owned()
        })
        .collect();
    (names, signatures)
}

fn run(source: &str) -> Result<serde_json::Value, ScriptFailure> {
    let limits = Limits::default();
    let engine = script::build_engine(&limits, None, None);
    let ast = script::compile(&engine, source)?;
    script::run(&engine, &ast, Default::default(), &limits)
}

#[test]
fn no_script_function_reaches_outside() {
    let (names, signatures) = callable_names();
    println!(
        "{} functions callable by scripts ({} signatures):\n{}",
        names.len(),
        signatures.len(),
        signatures.join("\n")
    );
    let stubbed: BTreeSet<&str> = STUBS.iter().map(|(name, _, _)| *name).collect();
    let denied: Vec<&String> = names
        .iter()
        .filter(|n| !stubbed.contains(n.as_str()))
        .filter(|n| {
            let lower = n.to_lowercase();
            DENIED.contains(&lower.as_str()) || DENIED_FRAGMENTS.iter().any(|f| lower.contains(f))
        })
        .collect();
    assert!(
        denied.is_empty(),
        "scripts can call denied functions: {denied:?} (all names: {names:?})"
    );
    assert!(
        names.contains("sha256") && names.contains("push"),
        "{names:?}"
    );
}

#[test]
fn denied_names_that_exist_are_failing_stubs() {
    for (name, message, calls) in STUBS {
        for call in *calls {
            let failure = run(&format!("fn compute(inputs) {{ {call} }}"))
                .err()
                .unwrap_or_else(|| panic!("{call} succeeded"));
            assert_eq!(failure.reason, EvalFailure::Runtime, "{call}");
            assert!(
                failure.message.contains(name) && failure.message.contains(message),
                "{call}: {}",
                failure.message
            );
        }
    }
}

#[test]
fn eval_and_modules_do_not_compile() {
    for source in [
        "fn compute(inputs) { eval(\"1\") }",
        "import \"fs\" as fs; fn compute(inputs) { 1 }",
        "fn compute(inputs) { import \"fs\" as fs; 1 }",
    ] {
        let failure = run(source).err().unwrap_or_else(|| panic!("{source} ran"));
        assert_eq!(failure.reason, EvalFailure::Compile, "{source}");
    }
    // Reaching `eval` through a function pointer fails at run time.
    let failure = run("fn compute(inputs) { Fn(\"ev\" + \"al\").call(\"1\") }")
        .err()
        .unwrap_or_else(|| panic!("eval through Fn ran"));
    assert_eq!(failure.reason, EvalFailure::Runtime);
    assert!(failure.message.contains("eval"), "{}", failure.message);
}
