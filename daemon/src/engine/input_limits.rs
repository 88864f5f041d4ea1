//! The size limits of inputs: per slot and per instance (all slots of a round together),
//! each the smaller of what the manifest asks and the configured ceiling; what is counted
//! (the HPKE ciphertext as stored, without `enc`); the refusals that name which limit was
//! exceeded; and the ceiling check of a manifest at instance creation.

use arbiter_policy::manifest::{Limits, ManifestProblem};

use super::EngineError;
use crate::config::{LimitsSection, input_body_limit};

/// Where an effective limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitSource {
    /// The instance's manifest (`limits.*`).
    Manifest,
    /// The daemon's configuration (`[limits]`).
    Config,
}

/// One effective limit, in ciphertext bytes, and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// The largest number of bytes allowed.
    pub bytes: u64,
    /// Whose limit it is.
    pub source: LimitSource,
}

impl Limit {
    fn of(asked: Option<u64>, ceiling: u64) -> Self {
        match asked {
            Some(bytes) if bytes <= ceiling => Self {
                bytes,
                source: LimitSource::Manifest,
            },
            _ => Self {
                bytes: ceiling,
                source: LimitSource::Config,
            },
        }
    }

    /// `limits.max_input_bytes = N (the manifest's)`, for messages.
    fn describe(&self, field: &str) -> String {
        match self.source {
            LimitSource::Manifest => {
                format!("the manifest's limits.{field} = {} bytes", self.bytes)
            }
            LimitSource::Config => {
                format!(
                    "the appliance's configured [limits] {field} = {} bytes",
                    self.bytes
                )
            }
        }
    }
}

/// The effective input limits of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Largest ciphertext of one slot.
    pub slot: Limit,
    /// Largest total of the ciphertexts in all slots of the instance.
    pub instance: Limit,
}

impl InputLimits {
    /// The smaller of the manifest's and the configuration's, each.
    pub fn of(manifest: &Limits, config: &LimitsSection) -> Self {
        Self {
            slot: Limit::of(manifest.max_input_bytes, config.max_input_bytes),
            instance: Limit::of(
                manifest.max_instance_input_bytes,
                config.max_instance_input_bytes,
            ),
        }
    }

    /// The largest body that may carry an input of `slot` when the other slots hold
    /// `others` bytes, and the refusal of a larger one (`received` bytes seen or declared).
    pub fn body_limit(&self, slot: &str, others: u64) -> (u64, BodyRefusal) {
        let by_slot = input_body_limit(self.slot.bytes);
        let by_instance = input_body_limit(self.instance.bytes.saturating_sub(others));
        if by_slot <= by_instance {
            (
                by_slot,
                BodyRefusal {
                    limits: *self,
                    slot: slot.to_owned(),
                    others: None,
                },
            )
        } else {
            (
                by_instance,
                BodyRefusal {
                    limits: *self,
                    slot: slot.to_owned(),
                    others: Some(others),
                },
            )
        }
    }

    /// Checks a ciphertext of `bytes` for `slot` while the other slots hold `others`.
    pub fn check(&self, slot: &str, bytes: u64, others: u64) -> Result<(), EngineError> {
        if bytes > self.slot.bytes {
            return Err(slot_exceeded(
                self,
                slot,
                &format!("this input is {bytes} bytes"),
            ));
        }
        if others.saturating_add(bytes) > self.instance.bytes {
            return Err(instance_exceeded(
                self,
                others,
                &format!(
                    "this input of {bytes} bytes would bring them to {}",
                    others + bytes
                ),
            ));
        }
        Ok(())
    }
}

/// The refusal of a body larger than [`InputLimits::body_limit`], naming the limit that
/// bounded it.
#[derive(Debug, Clone)]
pub struct BodyRefusal {
    limits: InputLimits,
    slot: String,
    /// `Some(bytes in the other slots)` when the instance's limit is the tighter one.
    others: Option<u64>,
}

impl BodyRefusal {
    /// The refusal of a body of (at least) `body_bytes`.
    pub fn error(&self, body_bytes: u64) -> EngineError {
        let what = format!(
            "the request body ({body_bytes} bytes or more) is larger than any such input's \
             (base64 in JSON)"
        );
        match self.others {
            None => slot_exceeded(&self.limits, &self.slot, &what),
            Some(others) => instance_exceeded(&self.limits, others, &what),
        }
    }
}

fn slot_exceeded(limits: &InputLimits, slot: &str, what: &str) -> EngineError {
    EngineError::TooLarge {
        code: "input_too_large",
        message: format!(
            "slot `{slot}` takes at most {} of ciphertext ({}); {what}; nothing was stored",
            plural(limits.slot.bytes),
            limits.slot.describe("max_input_bytes"),
        ),
    }
}

fn instance_exceeded(limits: &InputLimits, others: u64, what: &str) -> EngineError {
    EngineError::TooLarge {
        code: "instance_inputs_too_large",
        message: format!(
            "the inputs of this instance's round take at most {} of ciphertext together ({}); \
             the other slots hold {}, {what}; nothing was stored",
            plural(limits.instance.bytes),
            limits.instance.describe("max_instance_input_bytes"),
            plural(others),
        ),
    }
}

fn plural(bytes: u64) -> String {
    if bytes == 1 {
        "1 byte".to_owned()
    } else {
        format!("{bytes} bytes")
    }
}

/// The problems of a manifest asking more than the configured ceilings (instance creation
/// refuses it), each naming the field and the ceiling.
pub fn ceiling_problems(manifest: &Limits, config: &LimitsSection) -> Vec<ManifestProblem> {
    let mut problems = Vec::new();
    for (field, asked, ceiling) in [
        (
            "max_input_bytes",
            manifest.max_input_bytes,
            config.max_input_bytes,
        ),
        (
            "max_instance_input_bytes",
            manifest.max_instance_input_bytes,
            config.max_instance_input_bytes,
        ),
    ] {
        if let Some(asked) = asked
            && asked > ceiling
        {
            problems.push(ManifestProblem {
                pointer: format!("/limits/{field}"),
                reason: format!(
                    "{asked} is more than this appliance allows: its configured ceiling \
                     [limits] {field} is {ceiling}"
                ),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use super::*;

    fn config(slot: u64, instance: u64) -> LimitsSection {
        LimitsSection {
            max_input_bytes: slot,
            max_instance_input_bytes: instance,
            ..LimitsSection::default()
        }
    }

    fn manifest(slot: Option<u64>, instance: Option<u64>) -> Limits {
        Limits {
            max_input_bytes: slot,
            max_instance_input_bytes: instance,
            ..Limits::default()
        }
    }

    fn message(e: EngineError) -> (&'static str, String) {
        match e {
            EngineError::TooLarge { code, message } => (code, message),
            other => panic!("not a size refusal: {other}"),
        }
    }

    #[test]
    fn the_smaller_of_manifest_and_config_wins_and_is_named() {
        let l = InputLimits::of(&manifest(Some(1_000), None), &config(5_000, 8_000));
        assert_eq!(l.slot.bytes, 1_000);
        assert_eq!(l.slot.source, LimitSource::Manifest);
        assert_eq!(l.instance.bytes, 8_000);
        assert_eq!(l.instance.source, LimitSource::Config);
        let (code, m) = message(l.check("a", 1_001, 0).unwrap_err());
        assert_eq!(code, "input_too_large");
        assert!(m.contains("slot `a`") && m.contains("manifest's limits.max_input_bytes = 1000"));
        let (code, m) = message(l.check("a", 900, 7_500).unwrap_err());
        assert_eq!(code, "instance_inputs_too_large");
        assert!(
            m.contains("configured [limits] max_instance_input_bytes = 8000"),
            "{m}"
        );
        assert!(m.contains("other slots hold 7500 bytes"), "{m}");
        l.check("a", 1_000, 7_000).unwrap();
    }

    #[test]
    fn the_body_limit_follows_the_tighter_limit() {
        let l = InputLimits::of(&manifest(None, None), &config(3_000, 10_000));
        let (limit, refusal) = l.body_limit("a", 0);
        assert_eq!(limit, input_body_limit(3_000));
        assert_eq!(message(refusal.error(limit + 1)).0, "input_too_large");
        let (limit, refusal) = l.body_limit("a", 9_000);
        assert_eq!(limit, input_body_limit(1_000));
        assert_eq!(
            message(refusal.error(limit + 1)).0,
            "instance_inputs_too_large"
        );
    }

    #[test]
    fn a_manifest_above_the_ceiling_names_field_and_ceiling() {
        let p = ceiling_problems(&manifest(Some(10), Some(100)), &config(5, 100));
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].pointer, "/limits/max_input_bytes");
        assert!(
            p[0].reason.contains("[limits] max_input_bytes is 5"),
            "{}",
            p[0].reason
        );
        assert!(ceiling_problems(&manifest(Some(5), None), &config(5, 100)).is_empty());
    }
}
