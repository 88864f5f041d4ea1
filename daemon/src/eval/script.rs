//! The Rhai side of an evaluation: the locked-down engine, conversions between JSON and
//! Rhai values, running `compute(inputs)` and turning Rhai's errors into
//! [`EvalFailure`]s with clear messages.
//!
//! Pure: no process, pipe or system-call business here, so unit tests run it in-process.
//! The engine is built with [`Engine::new_raw`] plus the standard packages minus the
//! clock (`timestamp`), with `eval` and `import` disabled, no module resolver, `print`
//! and `debug` going nowhere, `sleep` failing, and every Rhai limit set from [`Limits`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rhai::packages::{
    BasicArrayPackage, BasicBlobPackage, BasicMapPackage, BasicMathPackage, BitFieldPackage,
    CorePackage, LogicPackage, MoreStringPackage, Package,
};
use rhai::{
    AST, Array, Blob, CallFnOptions, Dynamic, Engine, EvalAltResult, ImmutableString, Map,
    ParseError, Scope,
};
use serde_json::Value;

use super::helpers::{self, Rng};
use super::lists;
use super::numbers::NumberList;
use super::strings::StringList;
use super::{EvalFailure, Limits};

/// Nesting depth allowed in inputs and outputs (JSON parsers, serde_json's included,
/// refuse much deeper documents).
pub(crate) const MAX_VALUE_DEPTH: usize = 100;

/// Expression nesting allowed by the parser, at top level and inside functions.
const MAX_EXPR_DEPTH: usize = 64;
const MAX_FUNCTION_EXPR_DEPTH: usize = 32;

/// Name and arity of the entry point.
pub(crate) const ENTRY_POINT: &str = "compute";

/// A failure of the script, as the child reports it.
#[derive(Debug)]
pub(crate) struct ScriptFailure {
    pub(crate) reason: EvalFailure,
    pub(crate) message: String,
}

impl ScriptFailure {
    pub(crate) fn new(reason: EvalFailure, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// Builds the evaluation engine for `limits`. `operations` receives the running count of
/// Rhai operations (for usage figures); `rng` is the seeded generator, if granted.
pub(crate) fn build_engine(
    limits: &Limits,
    rng: Option<Rng>,
    operations: Option<Arc<AtomicU64>>,
) -> Engine {
    let mut engine = Engine::new_raw();
    for package in [
        CorePackage::new().as_shared_module(),
        BitFieldPackage::new().as_shared_module(),
        LogicPackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicBlobPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
        MoreStringPackage::new().as_shared_module(),
    ] {
        engine.register_global_module(package);
    }
    helpers::register(&mut engine, rng);
    lists::register(&mut engine);

    engine.disable_symbol("eval");
    engine.disable_symbol("import");
    engine.disable_symbol("export");
    engine.on_print(|_| {});
    engine.on_debug(|_, _, _| {});
    engine.set_max_modules(0);

    // Rhai reads 0 as "unlimited" for these; here every limit is a limit.
    engine.set_max_operations(limits.operations.max(1));
    engine.set_max_call_levels(limits.max_call_depth);
    engine.set_max_string_size(limits.max_string_bytes.max(1));
    engine.set_max_array_size(limits.max_array_len.max(1));
    engine.set_max_map_size(limits.max_map_len.max(1));
    engine.set_max_expr_depths(MAX_EXPR_DEPTH, MAX_FUNCTION_EXPR_DEPTH);

    if let Some(counter) = operations {
        engine.on_progress(move |count| {
            counter.store(count, Ordering::Relaxed);
            None
        });
    }
    engine
}

/// Compiles `source` and checks that it defines `compute` with exactly one parameter.
pub(crate) fn compile(engine: &Engine, source: &str) -> Result<AST, ScriptFailure> {
    let ast = engine.compile(source).map_err(|e: ParseError| {
        ScriptFailure::new(
            EvalFailure::Compile,
            format!("the script does not compile: {e}"),
        )
    })?;
    let has_entry = ast
        .iter_functions()
        .any(|f| f.name == ENTRY_POINT && f.params.len() == 1);
    if !has_entry {
        return Err(ScriptFailure::new(
            EvalFailure::NoComputeFunction,
            "the script defines no function `compute(inputs)` with exactly one parameter",
        ));
    }
    Ok(ast)
}

/// Runs `compute(inputs)` (after the script's top-level statements) and converts its
/// result to JSON. The inputs (decoded from the request straight into Rhai values) move
/// into the script's `inputs` map: nothing is copied. (The child calls the two halves
/// itself to time them.)
#[cfg(test)]
pub(crate) fn run(
    engine: &Engine,
    ast: &AST,
    inputs: BTreeMap<String, Dynamic>,
    limits: &Limits,
) -> Result<Value, ScriptFailure> {
    let value = call_compute(engine, ast, inputs, limits)?;
    dynamic_to_json(&value, 0, limits)
}

/// Calls `compute(inputs)` (after the script's top-level statements) and returns its
/// value as Rhai left it.
pub(crate) fn call_compute(
    engine: &Engine,
    ast: &AST,
    inputs: BTreeMap<String, Dynamic>,
    limits: &Limits,
) -> Result<Dynamic, ScriptFailure> {
    let map: Map = inputs
        .into_iter()
        .map(|(slot, value)| (slot.into(), value))
        .collect();
    let mut scope = Scope::new();
    engine
        .call_fn_with_options::<Dynamic>(
            CallFnOptions::new().eval_ast(true).rewind_scope(true),
            &mut scope,
            ast,
            ENTRY_POINT,
            (Dynamic::from_map(map),),
        )
        .map_err(|e| classify(&e, limits))
}

/// Maps a Rhai error to a failure reason and a message.
pub(crate) fn classify(error: &EvalAltResult, limits: &Limits) -> ScriptFailure {
    let root = root_cause(error);
    let (reason, message) = match root {
        EvalAltResult::ErrorTooManyOperations(_) => (
            EvalFailure::OperationLimit,
            format!(
                "the script exceeded its operation limit of {} operations",
                limits.operations.max(1)
            ),
        ),
        EvalAltResult::ErrorStackOverflow(_) => (
            EvalFailure::CallDepthLimit,
            format!(
                "the script exceeded its call depth limit of {} (recursion too deep)",
                limits.max_call_depth
            ),
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => (
            EvalFailure::SizeLimit,
            format!(
                "the script exceeded a size limit: {what} too large (limits: strings {} bytes, \
                 arrays and blobs {} elements, maps {} entries)",
                limits.max_string_bytes.max(1),
                limits.max_array_len.max(1),
                limits.max_map_len.max(1)
            ),
        ),
        EvalAltResult::ErrorTooManyModules(_) | EvalAltResult::ErrorModuleNotFound(..) => (
            EvalFailure::Runtime,
            "the script failed: modules are not available to scripts".to_owned(),
        ),
        _ => (EvalFailure::Runtime, format!("the script failed: {error}")),
    };
    ScriptFailure::new(reason, message)
}

/// The innermost error of a chain of function-call wrappers.
fn root_cause(error: &EvalAltResult) -> &EvalAltResult {
    match error {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => root_cause(inner),
        other => other,
    }
}

/// Rhai to JSON: `()` is `null`; integers, finite floats, booleans and strings map
/// directly; a character becomes a one-character string; a blob becomes a lowercase hex
/// string; arrays and maps recurse up to [`MAX_VALUE_DEPTH`]. Anything else (function
/// pointers, non-finite floats, ...) is [`EvalFailure::BadOutput`].
///
/// Sizes are checked again here against `limits` ([`EvalFailure::SizeLimit`]): Rhai
/// 1.27 does not check a map's size when `m[key] = value` adds an entry.
pub(crate) fn dynamic_to_json(
    value: &Dynamic,
    depth: usize,
    limits: &Limits,
) -> Result<Value, ScriptFailure> {
    let too_large = |what: &str, len: usize, max: usize| {
        ScriptFailure::new(
            EvalFailure::SizeLimit,
            format!("the script's result holds {what} of {len}, more than the limit of {max}"),
        )
    };
    let bad = |why: String| {
        ScriptFailure::new(
            EvalFailure::BadOutput,
            format!("the script's result cannot be represented as JSON: {why}"),
        )
    };
    if depth > MAX_VALUE_DEPTH {
        return Err(bad(format!("nested deeper than {MAX_VALUE_DEPTH} levels")));
    }
    if value.is_unit() {
        return Ok(Value::Null);
    }
    if let Ok(b) = value.as_bool() {
        return Ok(Value::Bool(b));
    }
    if let Ok(i) = value.as_int() {
        return Ok(Value::from(i));
    }
    if let Ok(f) = value.as_float() {
        return serde_json::Number::from_f64(f)
            .map(Value::Number)
            .ok_or_else(|| bad(format!("the float {f} is not finite")));
    }
    if let Ok(c) = value.as_char() {
        return Ok(Value::String(c.to_string()));
    }
    if let Some(s) = value.read_lock::<ImmutableString>() {
        if s.len() > limits.max_string_bytes.max(1) {
            return Err(too_large("a string", s.len(), limits.max_string_bytes));
        }
        return Ok(Value::String(s.to_string()));
    }
    if let Some(b) = value.read_lock::<Blob>() {
        if b.len() > limits.max_array_len.max(1) {
            return Err(too_large("a blob", b.len(), limits.max_array_len));
        }
        return Ok(Value::String(hex::encode(&*b)));
    }
    if let Some(list) = value.read_lock::<StringList>() {
        if list.len() > limits.max_array_len.max(1) {
            return Err(too_large("an array", list.len(), limits.max_array_len));
        }
        return list
            .iter()
            .map(|s| {
                if s.len() > limits.max_string_bytes.max(1) {
                    return Err(too_large("a string", s.len(), limits.max_string_bytes));
                }
                Ok(Value::String(s.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(list) = value.read_lock::<NumberList>() {
        if list.len() > limits.max_array_len.max(1) {
            return Err(too_large("an array", list.len(), limits.max_array_len));
        }
        return list
            .items()
            .iter()
            .map(|v| dynamic_to_json(v, depth + 1, limits))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(items) = value.read_lock::<Array>() {
        if items.len() > limits.max_array_len.max(1) {
            return Err(too_large("an array", items.len(), limits.max_array_len));
        }
        return items
            .iter()
            .map(|v| dynamic_to_json(v, depth + 1, limits))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array);
    }
    if let Some(fields) = value.read_lock::<Map>() {
        if fields.len() > limits.max_map_len.max(1) {
            return Err(too_large("a map", fields.len(), limits.max_map_len));
        }
        let mut object = serde_json::Map::new();
        for (k, v) in fields.iter() {
            object.insert(k.to_string(), dynamic_to_json(v, depth + 1, limits)?);
        }
        return Ok(Value::Object(object));
    }
    Err(bad(format!("a value of type {}", value.type_name())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(source: &str, inputs: Value) -> Result<Value, ScriptFailure> {
        eval_with(source, inputs, &Limits::default())
    }

    fn eval_with(source: &str, inputs: Value, limits: &Limits) -> Result<Value, ScriptFailure> {
        let engine = build_engine(limits, Some(Rng::new([9; 32])), None);
        let ast = compile(&engine, source)?;
        // As in the child: from the JSON text straight into Rhai values.
        let text = inputs.to_string();
        let inputs =
            lists::deserialize_slots(&mut serde_json::Deserializer::from_str(&text)).unwrap();
        run(&engine, &ast, inputs, limits)
    }

    fn reason(r: Result<Value, ScriptFailure>) -> EvalFailure {
        r.unwrap_err().reason
    }

    #[test]
    fn json_round_trip() {
        let v =
            json!({"a": [1, -2, 3.5, "x", true, null, {"b": []}], "big": 18446744073709551615u64});
        let out = eval("fn compute(inputs) { inputs }", v.clone()).unwrap();
        assert_eq!(out["a"], v["a"]);
        assert_eq!(out["big"], json!(18446744073709551615.0));
        let out = eval(
            "fn compute(i) { [blob(2, 0xab), 'c', 1.0, 2 / 3, 7 % 3] }",
            json!({}),
        )
        .unwrap();
        assert_eq!(out, json!(["abab", "c", 1.0, 0, 1]));
    }

    #[test]
    fn bad_outputs() {
        assert_eq!(
            reason(eval("fn compute(i) { Fn(\"compute\") }", json!({}))),
            EvalFailure::BadOutput
        );
        assert_eq!(
            reason(eval("fn compute(i) { 0.0 / 0.0 }", json!({}))),
            EvalFailure::BadOutput
        );
        let deep = "fn compute(i) { let a = []; for n in 0..200 { a = [a]; } a }";
        assert_eq!(reason(eval(deep, json!({}))), EvalFailure::BadOutput);
    }

    #[test]
    fn compile_checks() {
        assert_eq!(
            reason(eval("fn compute(i) { ", json!({}))),
            EvalFailure::Compile
        );
        assert_eq!(
            reason(eval("fn other(i) { 1 }", json!({}))),
            EvalFailure::NoComputeFunction
        );
        assert_eq!(
            reason(eval("fn compute(a, b) { 1 }", json!({}))),
            EvalFailure::NoComputeFunction
        );
        assert_eq!(
            reason(eval("fn compute(i) { eval(\"1\") }", json!({}))),
            EvalFailure::Compile
        );
        assert_eq!(
            reason(eval("import \"x\" as y; fn compute(i) { 1 }", json!({}))),
            EvalFailure::Compile
        );
    }

    #[test]
    fn no_clock_no_randomness_no_output() {
        for source in [
            "fn compute(i) { timestamp() }",
            "fn compute(i) { sleep(1) }",
            "fn compute(i) { sleep(0.5) }",
        ] {
            assert_eq!(
                reason(eval(source, json!({}))),
                EvalFailure::Runtime,
                "{source}"
            );
        }
        // print and debug exist but go nowhere.
        let out = eval("fn compute(i) { print(\"x\"); debug(1); 2 }", json!({})).unwrap();
        assert_eq!(out, json!(2));
        let limits = Limits::default();
        let engine = build_engine(&limits, None, None);
        let ast = compile(&engine, "fn compute(i) { random_int(1, 6) }").unwrap();
        let e = run(&engine, &ast, BTreeMap::new(), &limits).unwrap_err();
        assert_eq!(e.reason, EvalFailure::Runtime);
        assert!(e.message.contains("no seeded RNG"), "{}", e.message);
    }

    #[test]
    fn seeded_rng_is_deterministic() {
        let source = "fn compute(i) { let a = []; for n in 0..5 { a.push(random_int(1, 6)); } a }";
        let first = eval(source, json!({})).unwrap();
        assert_eq!(first, eval(source, json!({})).unwrap());
        assert_eq!(first.as_array().unwrap().len(), 5);
    }

    #[test]
    fn limits_map_to_reasons() {
        let tight = Limits {
            operations: 100_000,
            max_call_depth: 8,
            max_string_bytes: 100,
            max_array_len: 10,
            max_map_len: 10,
            ..Limits::default()
        };
        let cases = [
            ("fn compute(i) { loop {} }", EvalFailure::OperationLimit),
            (
                "fn f(n) { f(n + 1) } fn compute(i) { f(0) }",
                EvalFailure::CallDepthLimit,
            ),
            (
                "fn compute(i) { let s = \"x\"; loop { s += s; } }",
                EvalFailure::SizeLimit,
            ),
            (
                "fn compute(i) { let a = []; loop { a.push(1); } }",
                EvalFailure::SizeLimit,
            ),
            (
                "fn compute(i) { let m = #{}; let n = 0; loop { m += #{}; m[`k${n}`] = n; n += 1; } }",
                EvalFailure::SizeLimit,
            ),
            // Rhai does not check `m[key] = value`; the output check does.
            (
                "fn compute(i) { let m = #{}; let n = 0; while n < 20 { m[`k${n}`] = n; n += 1; } m }",
                EvalFailure::SizeLimit,
            ),
            ("fn compute(i) { throw \"no\" }", EvalFailure::Runtime),
            ("fn compute(i) { 1 / 0 }", EvalFailure::Runtime),
        ];
        for (source, want) in cases {
            let got = eval_with(source, json!({}), &tight);
            let failure = got.unwrap_err();
            assert_eq!(failure.reason, want, "{source}: {}", failure.message);
        }
    }

    #[test]
    fn helpers_from_scripts() {
        let out = eval(
            "fn compute(i) { sha256(i.a + i.b) }",
            json!({"a": "Now is the time", "b": "for all good men"}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!("579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63")
        );
        let out = eval(
            "fn compute(i) { #{n: intersection_size(i.a, i.b), s: intersection(i.a, i.b), \
             m: mean(i.x), md: median(i.x), mo: mode(i.x), sd: stddev(i.x), \
             sorted: { let v = i.x; v.sort(); v } } }",
            json!({"a": ["p", "q", "r"], "b": ["r", "p"], "x": [4, 1, 3, 1]}),
        )
        .unwrap();
        assert_eq!(
            out,
            json!({"n": 2, "s": ["p", "r"], "m": 2.25, "md": 2.0, "mo": 1,
                   "sd": 1.299038105676658, "sorted": [1, 1, 3, 4]})
        );
    }

    #[test]
    fn top_level_constants_are_visible() {
        // Functions see top-level constants through the `global` namespace.
        let source = "const K = 3; fn compute(i) { global::K * i.x }";
        let out = eval(source, json!({"x": 2})).unwrap();
        assert_eq!(out, json!(6));
    }
}

#[cfg(test)]
mod list_tests {
    //! Inputs that decode into a [`StringList`] or a [`NumberList`] behave as the arrays
    //! they stand for.
    use super::*;
    use serde_json::json;

    fn eval(source: &str, inputs: &Value) -> Result<Value, ScriptFailure> {
        let limits = Limits::default();
        let engine = build_engine(&limits, None, None);
        let ast = compile(&engine, source)?;
        let text = inputs.to_string();
        let inputs =
            lists::deserialize_slots(&mut serde_json::Deserializer::from_str(&text)).unwrap();
        run(&engine, &ast, inputs, &limits)
    }

    #[test]
    fn decoding_makes_lists_only_of_nonempty_string_or_number_arrays() {
        let text = r#"{"a":["x","y\"z","é"],"b":[],"c":["x",1],"d":[["x"]],"e":"s","f":18446744073709551615,"g":null,"h":[1,2.5,18446744073709551615,-3,1e300,-0.0],"i":[1,"x"],"j":[1,[2]],"k":[1,null]}"#;
        let slots =
            lists::deserialize_slots(&mut serde_json::Deserializer::from_str(text)).unwrap();
        assert!(slots["a"].is::<StringList>());
        assert!(slots["h"].is::<NumberList>());
        for k in ["b", "c", "d", "i", "j", "k"] {
            assert!(slots[k].is_array(), "{k}");
        }
        // Everything decodes to what Rhai's own deserializer gives.
        let rhai: BTreeMap<String, Dynamic> = serde_json::from_str(text).unwrap();
        let limits = Limits::default();
        for (k, v) in &slots {
            assert_eq!(
                dynamic_to_json(v, 0, &limits).unwrap(),
                dynamic_to_json(&rhai[k], 0, &limits).unwrap(),
                "{k}"
            );
        }
    }

    #[test]
    fn scripts_see_an_array() {
        let inputs = json!({"a": ["p", "q", "r", "q"], "b": ["r", "p", "s"]});
        // Each expression is evaluated on the list and on `to_array()` of it: same result.
        let cases = [
            "type_of(L)",
            "L.len()",
            "L.len",
            "L.is_empty()",
            "L[0]",
            "L[-1]",
            "{ let n = []; for s in L { n.push(s + \"!\"); } n }",
            "{ let n = []; for (s, i) in L { n.push(i); } n }",
            "\"q\" in L",
            "\"z\" in L",
            "1 in L",
            "L.contains(\"p\")",
            "L == [\"p\", \"q\", \"r\", \"q\"]",
            "L != [\"p\", \"q\"]",
            "[\"p\", \"q\", \"r\", \"q\"] == L",
            "L + [\"z\"]",
            "[\"z\"] + L",
            "L + L",
            "L.map(|s| s.len())",
            "L.filter(|s| s != \"q\")",
            "L.reduce(|sum, s| sum + s.len(), 0)",
            "L.index_of(\"r\")",
            "L.get(1)",
            "L.get(9)",
            "{ let v = L; v.push(\"t\"); v }",
            "{ let v = L; v.sort(); v }",
            "{ let v = L; v.reverse(); v }",
            "{ let v = L; v.pop() }",
            "{ let v = L; v.dedup(); v }",
            "{ let v = L; v[1] = \"w\"; v }",
            "{ let v = L; v += [\"z\"]; v }",
            "{ let v = [1]; v.append(L); v }",
            "sorted(L)",
            "distinct(L)",
            "is_member(L, \"r\")",
            "is_member(L, \"x\")",
            "is_member(L, 3)",
            "intersection(L, M)",
            "intersection_size(L, M)",
            "intersection(M, L)",
            "deep_equal(L, M)",
            "deep_equal(L, [\"p\", \"q\", \"r\", \"q\"])",
            "deep_equal(L, L)",
            "#{ s: L }",
            "L",
        ];
        for case in cases {
            let on_list = format!("fn compute(i) {{ let L = i.a; let M = i.b; {case} }}");
            let on_array =
                format!("fn compute(i) {{ let L = to_array(i.a); let M = to_array(i.b); {case} }}");
            let mixed = format!("fn compute(i) {{ let L = i.a; let M = to_array(i.b); {case} }}");
            let want = eval(&on_array, &inputs).map_err(|e| e.message);
            assert_eq!(
                eval(&on_list, &inputs).map_err(|e| e.message),
                want,
                "{case}"
            );
            assert_eq!(
                eval(&mixed, &inputs).map_err(|e| e.message),
                want,
                "{case} (mixed)"
            );
        }
    }

    #[test]
    fn scripts_see_an_array_of_numbers() {
        let inputs = json!({"a": [3, 1.5, 2, 3, -4], "b": [2, 3.0, 7]});
        // Each expression is evaluated on the list and on `to_array()` of it: same result.
        let cases = [
            "type_of(L)",
            "L.len()",
            "L.len",
            "L.is_empty()",
            "L[0]",
            "L[1]",
            "L[-1]",
            "{ let n = []; for x in L { n.push(x * 2); } n }",
            "3 in L",
            "3.0 in L",
            "9 in L",
            "\"3\" in L",
            "L.contains(2)",
            "L == [3, 1.5, 2, 3, -4]",
            "L == [3.0, 1.5, 2, 3, -4]",
            "L != [3, 1.5]",
            "[3, 1.5, 2, 3, -4] == L",
            "L == M",
            "L + [9]",
            "[9] + L",
            "L + L",
            "L.map(|x| x * 2)",
            "L.filter(|x| x > 1)",
            "L.reduce(|sum, x| sum + x, 0)",
            "L.index_of(2)",
            "L.get(1)",
            "L.get(9)",
            "{ let v = L; v.push(5); v }",
            "{ let v = L; v.push(5.5); v.len() }",
            "{ let v = L; v.reverse(); v }",
            "{ let v = L; v.pop() }",
            "{ let v = L; v.dedup(); v }",
            "{ let v = L; v[1] = 9; v }",
            "{ let v = L; v += [1]; v }",
            "{ let v = [\"s\"]; v.append(L); v }",
            "sorted(L)",
            "distinct(L)",
            "is_member(L, 3)",
            "is_member(L, 3.0)",
            "is_member(L, \"x\")",
            "intersection(L, M)",
            "intersection_size(L, M)",
            "intersection(M, L)",
            "deep_equal(L, M)",
            "deep_equal(L, [3, 1.5, 2, 3, -4])",
            "deep_equal(L, L)",
            "mean(L)",
            "median(L)",
            "stddev(L)",
            "mode(L)",
            "mean(M)",
            "#{ s: L }",
            "L",
        ];
        for case in cases {
            let on_list = format!("fn compute(i) {{ let L = i.a; let M = i.b; {case} }}");
            let on_array =
                format!("fn compute(i) {{ let L = to_array(i.a); let M = to_array(i.b); {case} }}");
            let mixed = format!("fn compute(i) {{ let L = i.a; let M = to_array(i.b); {case} }}");
            // Errors compared without their positions (the scripts differ in length).
            let run = |source: &str| {
                eval(source, &inputs)
                    .map_err(|e| e.message.split(" (line ").next().unwrap_or("").to_owned())
            };
            let want = run(&on_array);
            assert_eq!(run(&on_list), want, "{case}");
            assert_eq!(run(&mixed), want, "{case} (mixed)");
        }
        // numeric_values gives one list of every slot's numbers, in key order, shared
        // when there is one slot.
        let out = eval(
            "fn compute(i) { let x = numeric_values(i); [type_of(x), x, mean(x)] }",
            &json!({"b": [4, 5.5], "a": 1, "c": [7]}),
        )
        .unwrap();
        assert_eq!(out, json!(["array", [1, 4, 5.5, 7], 4.375]));
        let out = eval("fn compute(i) { numeric_values(i) }", &json!({"a": []})).unwrap();
        assert_eq!(out, json!([]));
    }

    #[test]
    fn errors_name_the_problem() {
        let inputs = json!({"a": ["p", "q"]});
        for (case, want) in [
            ("i.a[2]", "out of bounds"),
            ("mean(i.a)", "mean: elements must be numbers, not string"),
            ("numeric_values(i)", "holds an array with a string"),
            (
                "{ let v = i.a; v.push(1); v }",
                "call to_array() on it first",
            ),
            (
                "{ let v = i.a; v[0] = 1; v }",
                "call to_array() on it first",
            ),
            (
                "{ let v = i.a; v.insert(0, 1); v }",
                "call to_array() on it first",
            ),
        ] {
            let source = format!("fn compute(i) {{ {case} }}");
            let e = eval(&source, &inputs).unwrap_err();
            assert!(e.message.contains(want), "{case}: {}", e.message);
        }
        let numbers = json!({"n": [1, 2.5]});
        for (case, want) in [
            ("i.n[-3]", "out of bounds"),
            (
                "{ let v = i.n; v.push(\"x\"); v }",
                "list of numbers and can hold only numbers, not string; call to_array()",
            ),
            (
                "{ let v = i.n; v[0] = true; v }",
                "can hold only numbers, not bool",
            ),
            (
                "{ let v = i.n; v.insert(0, \"x\"); v }",
                "call to_array() on it first",
            ),
            ("shamir_combine(i.n)", "shamir_combine"),
        ] {
            let source = format!("fn compute(i) {{ {case} }}");
            let e = eval(&source, &numbers).unwrap_err();
            assert!(e.message.contains(want), "{case}: {}", e.message);
        }
        // The one difference: Rhai's built-in `array += value` pushes a list as one
        // element (it does for any non-array value); `append` or `to_array` concatenate.
        let out = eval("fn compute(i) { let v = [1]; v += i.a; v }", &inputs).unwrap();
        assert_eq!(out, json!([1, ["p", "q"]]));
        // On an ordinary array the same changes work.
        let out = eval(
            "fn compute(i) { let v = to_array(i.a); v.push(1); v[0] = 2; v }",
            &inputs,
        )
        .unwrap();
        assert_eq!(out, json!([2, "q", 1]));
    }

    #[test]
    fn output_limits_apply_to_lists() {
        let limits = Limits {
            max_array_len: 2,
            ..Limits::default()
        };
        let engine = build_engine(&limits, None, None);
        let ast = compile(&engine, "fn compute(i) { i.a }").unwrap();
        let inputs = lists::deserialize_slots(&mut serde_json::Deserializer::from_str(
            r#"{"a":["p","q","r"]}"#,
        ))
        .unwrap();
        let e = run(&engine, &ast, inputs, &limits).unwrap_err();
        assert_eq!(e.reason, EvalFailure::SizeLimit, "{}", e.message);
    }
}
