//! The states of a computation instance, as stored and as answered on the wire.
//!
//! ```text
//! open ──(all inputs / trigger)──▶ evaluating ──▶ evaluated ──▶ destroying ──▶ destroyed
//!   ▲                                  │  (more rounds)              ▲
//!   └──────────────────────────────────┘                             │
//! open / evaluating / evaluated ─────────(destroy, expiry, reset)────┘
//! ```

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ProtoError;

/// Where an instance is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstanceState {
    /// Accepting inputs (and approvals) for the current round.
    Open,
    /// The round is closed and the function is being (or about to be) evaluated.
    Evaluating,
    /// The last round was evaluated; results can be read.
    Evaluated,
    /// Destruction has been decided and is being carried out.
    Destroying,
    /// The sealing key is gone; a certificate of destruction exists.
    Destroyed,
}

impl InstanceState {
    /// Every state, in lifecycle order.
    pub const ALL: [InstanceState; 5] = [
        InstanceState::Open,
        InstanceState::Evaluating,
        InstanceState::Evaluated,
        InstanceState::Destroying,
        InstanceState::Destroyed,
    ];

    /// The states in which the instance still holds inputs that can be decrypted.
    pub const LIVE: [InstanceState; 4] = [
        InstanceState::Open,
        InstanceState::Evaluating,
        InstanceState::Evaluated,
        InstanceState::Destroying,
    ];

    /// The name used on the wire and in the store.
    pub const fn as_str(self) -> &'static str {
        match self {
            InstanceState::Open => "open",
            InstanceState::Evaluating => "evaluating",
            InstanceState::Evaluated => "evaluated",
            InstanceState::Destroying => "destroying",
            InstanceState::Destroyed => "destroyed",
        }
    }

    /// Whether destruction has begun or finished.
    pub const fn is_destroyed_or_destroying(self) -> bool {
        matches!(self, InstanceState::Destroying | InstanceState::Destroyed)
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for InstanceState {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstanceState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| ProtoError::UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_json() {
        for state in InstanceState::ALL {
            assert_eq!(state.as_str().parse::<InstanceState>(), Ok(state));
            let json = serde_json::to_string(&state).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", state.as_str()));
            assert_eq!(
                serde_json::from_str::<InstanceState>(&json).ok(),
                Some(state)
            );
        }
        assert!("Open".parse::<InstanceState>().is_err());
        assert!("".parse::<InstanceState>().is_err());
    }
}
