//! The fleet revocation state: set when Keylime's verifier says this appliance failed
//! (pushed by its notifier or webhook, or seen by polling the verifier), kept in
//! `<state_dir>/keylime/revoked.json` so it survives restarts, and cleared only by an
//! operator. While set, the daemon is degraded: it refuses everything that needs a secret
//! (no new inputs, no evaluation), `/healthz` and the attestation answer say why.
//! Also here: reading Keylime's revocation messages.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// A revocation in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revoked {
    /// What the verifier said, in words for the parties and the operator.
    pub reason: String,
    /// How it arrived: `notification`, `webhook` or `verifier_status`.
    pub source: String,
    /// When it arrived (RFC 3339, UTC).
    pub since: String,
}

/// The persisted revocation state of one state directory.
#[derive(Debug)]
pub struct RevocationState {
    path: PathBuf,
    current: Mutex<Option<Revoked>>,
}

const FILE: &str = "revoked.json";

impl RevocationState {
    /// Loads the state of `state_dir` (none kept: not revoked). A file that does not parse
    /// is an error: the daemon must not forget a revocation by misreading it.
    pub fn load(state_dir: &Path) -> Result<Self, String> {
        let path = super::identity::dir(state_dir).join(FILE);
        let current = match std::fs::read(&path) {
            Ok(bytes) => Some(serde_json::from_slice::<Revoked>(&bytes).map_err(|e| {
                format!(
                    "{} does not parse ({e}); it records a fleet revocation — fix or remove it \
                     only if the appliance was checked",
                    path.display()
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        Ok(Self {
            path,
            current: Mutex::new(current),
        })
    }

    /// The revocation in force, if any.
    pub fn current(&self) -> Option<Revoked> {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records a revocation (written to disk first); a revocation already in force is kept
    /// as it is (the first reason stands). Returns whether it is new.
    pub fn revoke(&self, reason: &str, source: &str) -> Result<bool, String> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.is_some() {
            return Ok(false);
        }
        let revoked = Revoked {
            reason: crate::logging::clip(reason).to_string(),
            source: source.to_owned(),
            since: crate::engine::now(),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        }
        let bytes = serde_json::to_vec_pretty(&revoked).map_err(|e| e.to_string())?;
        super::identity::write_private(&self.path, &bytes)?;
        tracing::warn!(
            event = "keylime_revoked",
            source,
            reason = %revoked.reason,
            "revoked by the fleet verifier: degraded until an operator clears it"
        );
        *current = Some(revoked);
        Ok(true)
    }

    /// Clears the revocation (the file removed first); returns the one cleared.
    pub fn clear(&self) -> Result<Option<Revoked>, String> {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("removing {}: {e}", self.path.display())),
        }
        let cleared = current.take();
        if let Some(r) = &cleared {
            tracing::warn!(
                event = "keylime_revocation_cleared",
                reason = %r.reason,
                "the operator cleared the fleet revocation"
            );
        }
        Ok(cleared)
    }
}

/// A revocation message of Keylime's verifier, as its agent notifier and webhook send it:
/// `{"msg": "<JSON text>", "signature": "..."}`, the inner JSON naming `agent_id` and
/// `type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The agent the verifier found failing.
    pub agent_id: String,
    /// The message type (`revocation`).
    pub kind: String,
    /// The failure's event id, when given (e.g. `pcr_validation.invalid_pcr_4`).
    pub event_id: Option<String>,
    /// When the verifier says it happened.
    pub event_time: Option<String>,
}

impl Notification {
    /// Parses the outer JSON and the inner message; anything else is refused with a
    /// reason.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let outer: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
        let msg = outer.get("msg").ok_or("the body has no `msg`")?;
        let inner: serde_json::Value = match msg {
            serde_json::Value::String(s) => {
                serde_json::from_str(s).map_err(|e| format!("`msg` is not JSON text: {e}"))?
            }
            serde_json::Value::Object(_) => msg.clone(),
            _ => return Err("`msg` is neither JSON text nor an object".into()),
        };
        let text = |k: &str| inner.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let agent_id = text("agent_id").ok_or("the message names no `agent_id`")?;
        let kind = text("type").ok_or("the message has no `type`")?;
        Ok(Self {
            agent_id,
            kind,
            event_id: text("event_id"),
            event_time: text("event_time"),
        })
    }

    /// The reason recorded when the notification names this agent.
    pub fn reason(&self) -> String {
        let mut r = format!("the verifier sent a `{}` notification", self.kind);
        if let Some(e) = &self.event_id {
            r.push_str(&format!(" ({e})"));
        }
        if let Some(t) = &self.event_time {
            r.push_str(&format!(" at {t}"));
        }
        r
    }
}

/// The verifier's operational states that mean the agent failed (Keylime's
/// `common/states.py`): 7 `Failed`, 9 `Invalid Quote`.
pub fn failed_state(state: i64) -> Option<&'static str> {
    match state {
        7 => Some("Failed"),
        9 => Some("Invalid Quote"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keylime_messages() {
        let inner = r#"{"type": "revocation", "ip": "127.0.0.1", "agent_id": "a-1", "port": 9002, "event_id": "pcr_validation.invalid_pcr_4", "event_time": "Wed Dec  2 01:00:00 2026"}"#;
        let body = serde_json::json!({"msg": inner, "signature": ""}).to_string();
        let n = Notification::parse(body.as_bytes()).unwrap();
        assert_eq!(n.agent_id, "a-1");
        assert_eq!(n.kind, "revocation");
        assert!(n.reason().contains("invalid_pcr_4"));
        assert!(Notification::parse(b"{}").is_err());
        assert!(Notification::parse(br#"{"msg": "{\"type\": \"x\"}"}"#).is_err());
        assert!(Notification::parse(b"not json").is_err());
    }

    #[test]
    fn persists_until_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let s = RevocationState::load(dir.path()).unwrap();
        assert_eq!(s.current(), None);
        assert!(s.revoke("bad pcr", "webhook").unwrap());
        assert!(!s.revoke("other", "webhook").unwrap());
        let again = RevocationState::load(dir.path()).unwrap();
        assert_eq!(again.current().unwrap().reason, "bad pcr");
        assert_eq!(again.clear().unwrap().unwrap().source, "webhook");
        assert_eq!(RevocationState::load(dir.path()).unwrap().current(), None);
    }
}
