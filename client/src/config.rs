//! Where a party's settings come from: a command-line flag wins over the environment
//! (`ARBITER_SERVER`, `ARBITER_CERT`, `ARBITER_KEY`, `ARBITER_PIN_TLS_SPKI`,
//! `ARBITER_STATE`, `ARBITER_CONFIG`, `ARBITER_POLICY`), which wins over the config file
//! (`--config`, else `STATE/config.toml` when it exists), which wins over the defaults
//! (server `https://127.0.0.1:8443`, state `$XDG_CONFIG_HOME/arbiter` or
//! `~/.config/arbiter`, identity `STATE/identity/{cert,key}.pem`).
//!
//! The config file is TOML with the optional keys `server`, `cert`, `key`,
//! `pin_tls_spki` and `policy` (relative paths are relative to the file).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ClientError;

/// The default daemon address (the daemon's default `listen`).
pub const DEFAULT_SERVER: &str = "https://127.0.0.1:8443";

/// Values given on the command line (each overrides the environment and the file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--server URL`.
    pub server: Option<String>,
    /// `--cert FILE`.
    pub cert: Option<PathBuf>,
    /// `--key FILE`.
    pub key: Option<PathBuf>,
    /// `--pin-tls-spki HEX`.
    pub pin_tls_spki: Option<String>,
    /// `--state DIR`.
    pub state: Option<PathBuf>,
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--policy FILE` (for commands that appraise).
    pub policy: Option<PathBuf>,
    /// `--allow-unpinned-platform`: trust a platform the policy pins no reference value
    /// for (development on swtpm); added to whatever the policy file says.
    pub allow_unpinned_platform: bool,
}

/// The resolved settings of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The daemon, `https://host:port`.
    pub server: String,
    /// The party's certificate (PEM).
    pub cert: PathBuf,
    /// The party's key (PKCS#8 PEM).
    pub key: PathBuf,
    /// A pinned SHA-256 of the daemon's TLS SubjectPublicKeyInfo, hex.
    pub pin_tls_spki: Option<String>,
    /// The local state directory (trust store, receipts, saved certificates).
    pub state: PathBuf,
    /// The appraisal policy file, when one is configured.
    pub policy: Option<PathBuf>,
    /// Trust a platform the policy pins no reference value for (the command-line flag;
    /// the policy file's `allow_unpinned_platform` does the same).
    pub allow_unpinned_platform: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    pin_tls_spki: Option<String>,
    policy: Option<PathBuf>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn default_state() -> PathBuf {
    if let Some(x) = env("XDG_CONFIG_HOME") {
        return PathBuf::from(x).join("arbiter");
    }
    match env("HOME") {
        Some(home) => PathBuf::from(home).join(".config").join("arbiter"),
        None => PathBuf::from(".arbiter"),
    }
}

impl Settings {
    /// Resolves the settings: flags, then environment, then the config file, then
    /// defaults.
    ///
    /// # Errors
    /// `Config` for an unreadable or malformed config file or a malformed pin.
    pub fn resolve(o: Overrides) -> Result<Self, ClientError> {
        let state = o
            .state
            .or_else(|| env("ARBITER_STATE").map(PathBuf::from))
            .unwrap_or_else(default_state);
        let explicit = o
            .config
            .or_else(|| env("ARBITER_CONFIG").map(PathBuf::from));
        let config_path = explicit
            .clone()
            .unwrap_or_else(|| state.join("config.toml"));
        let file = if explicit.is_some() || config_path.exists() {
            let text = std::fs::read_to_string(&config_path)
                .map_err(|e| ClientError::Config(format!("{}: {e}", config_path.display())))?;
            toml::from_str::<FileConfig>(&text).map_err(|e| {
                ClientError::Config(format!("{}: {}", config_path.display(), e.message()))
            })?
        } else {
            FileConfig::default()
        };
        let base = config_path.parent().unwrap_or(Path::new(".")).to_owned();
        let rel = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let server = o
            .server
            .or_else(|| env("ARBITER_SERVER"))
            .or(file.server)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        let cert = o
            .cert
            .or_else(|| env("ARBITER_CERT").map(PathBuf::from))
            .or_else(|| file.cert.map(rel))
            .unwrap_or_else(|| state.join("identity").join("cert.pem"));
        let key = o
            .key
            .or_else(|| env("ARBITER_KEY").map(PathBuf::from))
            .or_else(|| file.key.map(rel))
            .unwrap_or_else(|| state.join("identity").join("key.pem"));
        let pin_tls_spki = o
            .pin_tls_spki
            .or_else(|| env("ARBITER_PIN_TLS_SPKI"))
            .or(file.pin_tls_spki);
        if let Some(pin) = &pin_tls_spki
            && !arbiter_policy::identity::is_identity(pin)
        {
            return Err(ClientError::Config(format!(
                "pin-tls-spki {pin:?} is not 64 lowercase hex characters"
            )));
        }
        let policy = o
            .policy
            .or_else(|| env("ARBITER_POLICY").map(PathBuf::from))
            .or_else(|| file.policy.map(rel));
        Ok(Self {
            server: server.trim_end_matches('/').to_owned(),
            cert,
            key,
            pin_tls_spki,
            state,
            policy,
            allow_unpinned_platform: o.allow_unpinned_platform,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_win_over_the_file_and_paths_are_relative_to_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            "server = \"https://10.0.0.1:9000\"\ncert = \"me.pem\"\npolicy = \"p.toml\"\n",
        )
        .unwrap();
        let s = Settings::resolve(Overrides {
            state: Some(dir.path().to_owned()),
            key: Some(PathBuf::from("/k.pem")),
            ..Overrides::default()
        })
        .unwrap();
        // The environment of the test runner may set ARBITER_SERVER; only check the file
        // when it does not.
        if std::env::var_os("ARBITER_SERVER").is_none() {
            assert_eq!(s.server, "https://10.0.0.1:9000");
        }
        if std::env::var_os("ARBITER_CERT").is_none() {
            assert_eq!(s.cert, dir.path().join("me.pem"));
        }
        assert_eq!(s.key, PathBuf::from("/k.pem"));
        if std::env::var_os("ARBITER_POLICY").is_none() {
            assert_eq!(s.policy, Some(dir.path().join("p.toml")));
        }
    }

    #[test]
    fn unknown_keys_and_bad_pins_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), "sever = \"x\"\n").unwrap();
        let e = Settings::resolve(Overrides {
            state: Some(dir.path().to_owned()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("sever"), "{e}");
        std::fs::write(dir.path().join("config.toml"), "").unwrap();
        let e = Settings::resolve(Overrides {
            state: Some(dir.path().to_owned()),
            pin_tls_spki: Some("ABC".into()),
            ..Overrides::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("pin-tls-spki"), "{e}");
    }
}
