//! The output of a successful evaluation in the form the signed result carries.
//!
//! The result statement is signed over its JCS serialisation (RFC 8785), whose numbers are
//! IEEE doubles printed the ECMAScript way: `2.0` becomes `2`, `-0.0` becomes `0`, `1e21`
//! becomes `1e+21`, and an integer beyond ±(2^53 − 1) is rounded to the nearest double.
//! A party compares the output it is shown with the signed one, so the daemon serves
//! exactly what it signs: [`signable`] maps the output through JCS and refuses, as
//! [`EvalFailure::BadOutput`](super::EvalFailure::BadOutput), integers JCS would round
//! (a script returns those as strings).

use serde_json::Value;

/// Largest integer magnitude a double holds exactly (2^53 − 1, I-JSON's limit).
pub(crate) const MAX_EXACT_INTEGER: u64 = (1 << 53) - 1;

/// `output` as it reads back from its JCS text, or why it cannot be signed exactly.
pub(crate) fn signable(output: Value) -> Result<Value, String> {
    if let Some(n) = inexact_integer(&output) {
        return Err(format!(
            "the script's result holds the integer {n}, beyond ±{MAX_EXACT_INTEGER} \
             (2^53 − 1): signed JSON numbers are IEEE doubles (RFC 8785), so it would be \
             rounded; return it as a string"
        ));
    }
    let text = arbiter_policy::jcs::to_vec(&output);
    arbiter_policy::jcs::parse_strict(&text)
        .map_err(|e| format!("the script's result does not read back from its JCS form: {e}"))
}

/// The first integer in `value` that a double does not hold exactly, if any.
fn inexact_integer(value: &Value) -> Option<&serde_json::Number> {
    match value {
        Value::Number(n) => {
            let exact = match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u <= MAX_EXACT_INTEGER,
                (None, Some(i)) => i.unsigned_abs() <= MAX_EXACT_INTEGER,
                // A float: JCS prints its shortest round-trip form, which is exact.
                (None, None) => true,
            };
            (!exact).then_some(n)
        }
        Value::Array(items) => items.iter().find_map(inexact_integer),
        Value::Object(fields) => fields.values().find_map(inexact_integer),
        Value::Null | Value::Bool(_) | Value::String(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_take_their_jcs_form() {
        let out = signable(json!([2.0, -0.0, 0.5, 1e21, 1e-7, 3])).unwrap();
        assert_eq!(
            serde_json::to_string(&out).unwrap(),
            "[2,0,0.5,1e+21,1e-7,3]",
            "integral floats become integers, -0 becomes 0"
        );
        assert_eq!(
            arbiter_policy::jcs::to_string(&out),
            "[2,0,0.5,1e+21,1e-7,3]"
        );
        // What is served is what is signed, as a verifier compares it.
        let signed = arbiter_policy::jcs::parse_strict(&arbiter_policy::jcs::to_vec(&out)).unwrap();
        assert_eq!(signed, out);
    }

    #[test]
    fn integers_beyond_2_53_are_refused() {
        assert!(signable(json!({"a": [9007199254740991i64, -9007199254740991i64]})).is_ok());
        for big in [json!(9007199254740992u64), json!(i64::MIN), json!(u64::MAX)] {
            let e = signable(json!({"x": [big]})).unwrap_err();
            assert!(e.contains("2^53"), "{e}");
        }
    }
}
