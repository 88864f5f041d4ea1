//! The daemon's configuration: a TOML file (`/etc/arbiter/arbiterd.toml` by default) whose
//! every key can be overridden on the command line (`--set tpm.tcti="..."`), validated
//! before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::tpm::TpmConfig;

/// The default configuration file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/arbiter/arbiterd.toml";

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TOML does not parse or has unknown or mistyped keys.
    #[error("invalid configuration: {0}")]
    Parse(String),
    /// A `--set KEY=VALUE` override is malformed.
    #[error("invalid override `{0}`: expected KEY=VALUE, e.g. tpm.tcti=\"device:/dev/tpmrm0\"")]
    Override(String),
    /// A value is not acceptable.
    #[error("invalid configuration value `{key}`: {reason}")]
    Invalid {
        /// The key, dotted.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the HTTPS API listens (loopback by default).
    pub listen: SocketAddr,
    /// The durable state: database, measurement log, TLS certificate.
    pub state_dir: PathBuf,
    /// The TPM (`[tpm]`: tcti, platform_pcrs, application_pcr, ak_handle,
    /// statement_key_handle, sealing_nv_index).
    pub tpm: TpmConfig,
    /// The TLS certificate (generated on first start when absent).
    pub tls: TlsSection,
    /// Who may do what beyond what manifests grant.
    pub access: AccessSection,
    /// Request and evaluation limits.
    pub limits: LimitsSection,
    /// Attestation batching and evidence.
    pub attestation: AttestationSection,
    /// The evaluator program (this binary, re-executed); defaults to the running binary.
    pub evaluator: Option<PathBuf>,
    /// Settings that weaken the guarantees; each needs an explicit `true`.
    pub danger: DangerSection,
    /// Where log lines go and in which form (`[log]`).
    pub log: LogSection,
    /// The shipped function library (`[library]`, docs/functions.md).
    pub library: LibrarySection,
    /// Keylime's agent interface (`[keylime]`, docs/fleet.md); off by default.
    pub keylime: crate::keylime::config::KeylimeSection,
}

/// `[library]`: which shipped library functions (docs/functions.md) the daemon registers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LibrarySection {
    /// Library functions by name (e.g. `"psi"`) that are not registered, listed nor usable
    /// by new instances. A name the library does not have is refused at start.
    pub disabled: Vec<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            state_dir: PathBuf::from("/var/lib/arbiter"),
            tpm: TpmConfig::default(),
            tls: TlsSection::default(),
            access: AccessSection::default(),
            limits: LimitsSection::default(),
            attestation: AttestationSection::default(),
            evaluator: None,
            danger: DangerSection::default(),
            log: LogSection::default(),
            library: LibrarySection::default(),
            keylime: crate::keylime::config::KeylimeSection::default(),
        }
    }
}

/// `[tls]`: an operator-provided certificate; both or neither.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

/// An identity allowed to create instances, with its quota.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Creator {
    /// The identity (hex SHA-256 of its certificate's SPKI).
    pub identity: String,
    /// How many live (not destroyed) instances it may hold at once.
    #[serde(default = "default_quota")]
    pub max_live_instances: u32,
}

fn default_quota() -> u32 {
    10
}

/// `[access]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSection {
    /// Operators: may register functions, create instances (no quota), see usage and metrics.
    pub operators: Vec<String>,
    /// Identities that may register functions besides operators.
    pub function_registrars: Vec<String>,
    /// Identities that may create instances, with quotas.
    pub creators: Vec<Creator>,
}

/// `[limits]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest function source, in bytes.
    pub max_function_bytes: usize,
    /// Longest `wait` of a result long-poll, in seconds.
    pub max_wait_seconds: u64,
    /// Evaluations running at once.
    pub max_concurrent_evaluations: usize,
    /// Connections served at once (also bounded by the open-file limit, less a reserve for
    /// the TPM, the store and the evaluator); further clients wait in the kernel's queue.
    pub max_connections: usize,
    /// Connections served at once from one IP address; more are closed at once.
    pub max_connections_per_ip: usize,
    /// Seconds a client has for its TLS handshake.
    pub handshake_timeout_seconds: u64,
    /// Seconds a connection may sit idle, or take to send a request's headers.
    pub idle_timeout_seconds: u64,
    /// Seconds a client has to send a request body once its headers are in; for an input
    /// body (`PUT .../inputs/{slot}`), the longest silence allowed while it arrives (with
    /// `min_body_bytes_per_second`), whatever its size.
    pub body_timeout_seconds: u64,
    /// Request-body bytes buffered at once over all connections; a request that would
    /// exceed it is refused with 503 before its body is read.
    pub max_bodies_in_flight_bytes: usize,
    /// Ceiling on the input of one slot (its HPKE ciphertext as stored, in bytes); a
    /// manifest may ask less, never more. At most 512 MiB.
    pub max_input_bytes: u64,
    /// Ceiling on the inputs of one round of an instance, all slots together; a manifest
    /// may ask less, never more. At least `max_input_bytes`, at most 1 GiB.
    pub max_instance_input_bytes: u64,
    /// Disk bytes of input bodies being received at once (spooled to `STATE/spool/`); a
    /// submission that would exceed it is refused with 503 `busy` and `Retry-After`.
    pub max_spooled_bytes: u64,
    /// Slowest average rate, in bytes per second, at which an input body may arrive once
    /// `body_timeout_seconds` have passed; a slower body is cut off with 408.
    pub min_body_bytes_per_second: u64,
    /// Spooled input bodies decoded, decrypted and stored at once (each holds its input in
    /// memory a few times over while it is checked); more wait their turn.
    pub max_inputs_processing: usize,
    /// Client requests whose TPM work (a `GET /v1/tpm` not yet answered from memory, a
    /// credential activation, a Keylime quote) may wait for or use the TPM at once; one
    /// more is refused with 503 `busy` and `Retry-After`. The daemon's own TPM work never
    /// waits behind more than this many.
    pub max_tpm_requests_queued: usize,
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            max_body_bytes: 8 << 20,
            max_function_bytes: 256 << 10,
            max_wait_seconds: 60,
            max_concurrent_evaluations: 2,
            max_connections: 512,
            max_connections_per_ip: 64,
            handshake_timeout_seconds: 10,
            idle_timeout_seconds: 30,
            body_timeout_seconds: 30,
            max_bodies_in_flight_bytes: 64 << 20,
            max_input_bytes: 64 << 20,
            max_instance_input_bytes: 256 << 20,
            max_spooled_bytes: 1 << 30,
            min_body_bytes_per_second: 64 << 10,
            max_inputs_processing: 2,
            max_tpm_requests_queued: crate::tpm::DEFAULT_MAX_TPM_REQUESTS,
        }
    }
}

/// Bytes of JSON around an input's two base64 strings: the keys, quotes and punctuation,
/// `expect_function_sha256` (64 hex) and generous room for whitespace.
pub const INPUT_BODY_OVERHEAD: u64 = 4096;

/// The largest body of `PUT /v1/instances/{id}/inputs/{slot}` carrying a ciphertext of
/// `ciphertext_bytes`: its base64 (4 characters per 3 bytes, padded), the base64 of the
/// 65-byte `enc`, and [`INPUT_BODY_OVERHEAD`].
pub fn input_body_limit(ciphertext_bytes: u64) -> u64 {
    ciphertext_bytes
        .div_ceil(3)
        .saturating_mul(4)
        .saturating_add(INPUT_BODY_OVERHEAD)
}

/// `[attestation]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AttestationSection {
    /// How long the first request of a batch waits for others to share its quote.
    pub batch_window_ms: u64,
    /// Hold a batch until this many requests joined (at most 10 s). For tests that need
    /// deterministic batching; leave at 1 in production.
    pub batch_min_leaves: usize,
    /// The firmware event log served with attestations, when the file exists and is not
    /// empty. Left at the default under systemd, the daemon reads the unit's
    /// `firmware-log` credential instead (see [`AttestationSection::firmware_log_source`]).
    pub firmware_log: PathBuf,
}

/// The kernel's copy of the firmware event log: the default of `attestation.firmware_log`.
/// Readable by root only.
pub const DEFAULT_FIRMWARE_LOG: &str = "/sys/kernel/security/tpm0/binary_bios_measurements";

/// The name of the systemd credential carrying the firmware event log
/// (`LoadCredential=firmware-log:…` in `arbiterd.service`).
pub const FIRMWARE_LOG_CREDENTIAL: &str = "firmware-log";

impl Default for AttestationSection {
    fn default() -> Self {
        Self {
            batch_window_ms: 5,
            batch_min_leaves: 1,
            firmware_log: PathBuf::from(DEFAULT_FIRMWARE_LOG),
        }
    }
}

/// What the unit's fallback credential holds where the host has no firmware log
/// (`SetCredential=firmware-log:absent`): read as no log.
pub const FIRMWARE_LOG_ABSENT: &[u8] = b"absent";

/// The firmware log to serve from what was read: none when the file was empty or is the
/// unit's [`FIRMWARE_LOG_ABSENT`] fallback.
pub fn firmware_log_content(bytes: Vec<u8>) -> Option<Vec<u8>> {
    (!bytes.is_empty() && bytes != FIRMWARE_LOG_ABSENT).then_some(bytes)
}

impl AttestationSection {
    /// Where to read the firmware event log from. The kernel's file is root's only and the
    /// service runs as its own user, so systemd hands it over as the credential
    /// `firmware-log`: with the default path configured and a `credentials_directory`
    /// (`$CREDENTIALS_DIRECTORY`) holding that credential, the credential is read. A path
    /// the operator configured is always read as configured.
    pub fn firmware_log_source(&self, credentials_directory: Option<&Path>) -> PathBuf {
        if self.firmware_log == Path::new(DEFAULT_FIRMWARE_LOG)
            && let Some(dir) = credentials_directory
        {
            let credential = dir.join(FIRMWARE_LOG_CREDENTIAL);
            if credential.is_file() {
                return credential;
            }
        }
        self.firmware_log.clone()
    }
}

/// `[danger]`: settings that weaken what verifiers can rely on.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DangerSection {
    /// Allow a platform PCR set that lacks one of 0, 2, 4, 7 (docs/protocol.md).
    pub weak_platform_pcrs: bool,
    /// Start even when memory cannot be locked (secrets could then reach swap).
    pub allow_unlocked_memory: bool,
}

/// `[log]`: the log format and level, taken once at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `auto` (journald when stderr is the journal, else human-readable lines), `journald`,
    /// `human` or `json` (one JSON object per line on stderr).
    pub format: LogFormat,
    /// The least severe level logged: `error`, `warn`, `info` (default), `debug`, `trace`.
    pub level: LogLevel,
}

/// How log events are written (`[log] format`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Journald when systemd connected stderr to the journal (`JOURNAL_STREAM` names
    /// stderr's device and inode), human-readable lines otherwise.
    #[default]
    Auto,
    /// Structured entries sent to the journal's native socket.
    Journald,
    /// One human-readable line per event on stderr (coloured on a terminal).
    Human,
    /// One JSON object per event on stderr.
    Json,
}

/// The least severe level logged (`[log] level`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Lifecycle events, refusals, warnings and errors.
    #[default]
    Info,
    /// Also every request and TPM command.
    Debug,
    /// Everything.
    Trace,
}

impl Config {
    /// Reads `path` (a missing default file means all defaults), applies `KEY=VALUE`
    /// overrides, and validates.
    pub fn load(path: Option<&Path>, overrides: &[String]) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.display().to_string(),
                source,
            })?,
            None => match std::fs::read_to_string(DEFAULT_CONFIG_PATH) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: DEFAULT_CONFIG_PATH.into(),
                        source,
                    });
                }
            },
        };
        Self::from_toml(&text, overrides)
    }

    /// Parses TOML text, applies overrides, validates.
    pub fn from_toml(text: &str, overrides: &[String]) -> Result<Self, ConfigError> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Whether a running daemon can apply a change of `key` (dotted, as
    /// [`Config::changed_keys`] names it) without a restart: what is read per request, the
    /// `[access]` lists and the `[limits]` on function size and long-poll wait. Everything
    /// else is taken once at start (the listener, the state directory, the TPM, TLS, the
    /// connection limits and the evaluation slots).
    pub fn reloadable(key: &str) -> bool {
        key == "access"
            || key.starts_with("access.")
            || key == "limits.max_function_bytes"
            || key == "limits.max_wait_seconds"
            || key == "limits.max_input_bytes"
            || key == "limits.max_instance_input_bytes"
    }

    /// The dotted keys (`limits.max_wait_seconds`, `access.operators`) whose values differ
    /// between `self` and `other`, a key present in one only included; arrays are compared
    /// whole.
    pub fn changed_keys(&self, other: &Config) -> Vec<String> {
        fn table(config: &Config) -> toml::Table {
            toml::Table::try_from(config).unwrap_or_default()
        }
        fn diff(prefix: &str, a: &toml::Table, b: &toml::Table, out: &mut Vec<String>) {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let dotted = format!("{prefix}{key}");
                match (a.get(key), b.get(key)) {
                    (Some(toml::Value::Table(x)), Some(toml::Value::Table(y))) => {
                        diff(&format!("{dotted}."), x, y, out);
                    }
                    (x, y) if x != y => out.push(dotted),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        diff("", &table(self), &table(other), &mut out);
        out
    }

    /// Checks values that types alone do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ids = self
            .access
            .operators
            .iter()
            .chain(&self.access.function_registrars)
            .chain(self.access.creators.iter().map(|c| &c.identity));
        for id in ids {
            if !arbiter_policy::identity::is_identity(id) {
                return Err(ConfigError::Invalid {
                    key: "access",
                    reason: format!(
                        "`{id}` is not an identity (64 lowercase hex characters: the SHA-256 \
                         of a certificate's SubjectPublicKeyInfo; `arbiter identity new` prints one)"
                    ),
                });
            }
        }
        let weak: Vec<u8> = [0u8, 2, 4, 7]
            .into_iter()
            .filter(|p| !self.tpm.platform_pcrs.contains(p))
            .collect();
        if !weak.is_empty() && !self.danger.weak_platform_pcrs {
            return Err(ConfigError::Invalid {
                key: "tpm.platform_pcrs",
                reason: format!(
                    "the set lacks PCR(s) {weak:?} (firmware, boot loader, Secure Boot policy); \
                     set danger.weak_platform_pcrs = true to accept a weaker platform binding"
                ),
            });
        }
        self.tpm_config()
            .validate()
            .map_err(|e| ConfigError::Invalid {
                key: "tpm",
                reason: e.to_string(),
            })?;
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(ConfigError::Invalid {
                key: "tls",
                reason: "give both tls.cert and tls.key, or neither".into(),
            });
        }
        let at_least_one: [(&'static str, u64); 13] = [
            (
                "limits.max_concurrent_evaluations",
                self.limits.max_concurrent_evaluations as u64,
            ),
            ("limits.max_connections", self.limits.max_connections as u64),
            (
                "limits.max_connections_per_ip",
                self.limits.max_connections_per_ip as u64,
            ),
            (
                "limits.handshake_timeout_seconds",
                self.limits.handshake_timeout_seconds,
            ),
            (
                "limits.idle_timeout_seconds",
                self.limits.idle_timeout_seconds,
            ),
            (
                "limits.body_timeout_seconds",
                self.limits.body_timeout_seconds,
            ),
            ("limits.max_body_bytes", self.limits.max_body_bytes as u64),
            ("limits.max_input_bytes", self.limits.max_input_bytes),
            (
                "limits.max_instance_input_bytes",
                self.limits.max_instance_input_bytes,
            ),
            ("limits.max_spooled_bytes", self.limits.max_spooled_bytes),
            (
                "limits.min_body_bytes_per_second",
                self.limits.min_body_bytes_per_second,
            ),
            (
                "limits.max_inputs_processing",
                self.limits.max_inputs_processing as u64,
            ),
            (
                "limits.max_tpm_requests_queued",
                self.limits.max_tpm_requests_queued as u64,
            ),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    reason: "must be at least 1".into(),
                });
            }
        }
        self.validate_input_limits()?;
        self.keylime.validate(self.listen)?;
        let unknown = crate::library::unknown_names(&self.library.disabled);
        if !unknown.is_empty() {
            return Err(ConfigError::Invalid {
                key: "library.disabled",
                reason: format!(
                    "no library function is named {}; the library has: {}",
                    unknown
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    crate::library::names().collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if self.limits.max_bodies_in_flight_bytes < self.limits.max_body_bytes {
            return Err(ConfigError::Invalid {
                key: "limits.max_bodies_in_flight_bytes",
                reason: format!(
                    "must be at least limits.max_body_bytes ({}), or no largest body could ever \
                     be read",
                    self.limits.max_body_bytes
                ),
            });
        }
        Ok(())
    }

    /// The input ceilings: within what one SQLite blob and the spool can hold, the slot's
    /// within the instance's.
    fn validate_input_limits(&self) -> Result<(), ConfigError> {
        use arbiter_policy::manifest::Limits;
        let l = &self.limits;
        if l.max_input_bytes > Limits::MAX_MAX_INPUT_BYTES {
            return Err(ConfigError::Invalid {
                key: "limits.max_input_bytes",
                reason: format!(
                    "must be at most {} (512 MiB: an input is one SQLite blob)",
                    Limits::MAX_MAX_INPUT_BYTES
                ),
            });
        }
        if l.max_instance_input_bytes > Limits::MAX_MAX_INSTANCE_INPUT_BYTES {
            return Err(ConfigError::Invalid {
                key: "limits.max_instance_input_bytes",
                reason: format!(
                    "must be at most {} (1 GiB)",
                    Limits::MAX_MAX_INSTANCE_INPUT_BYTES
                ),
            });
        }
        if l.max_instance_input_bytes < l.max_input_bytes {
            return Err(ConfigError::Invalid {
                key: "limits.max_instance_input_bytes",
                reason: format!(
                    "must be at least limits.max_input_bytes ({}), or no slot could take its \
                     largest input",
                    l.max_input_bytes
                ),
            });
        }
        let largest_body = input_body_limit(l.max_input_bytes);
        if l.max_spooled_bytes < largest_body {
            return Err(ConfigError::Invalid {
                key: "limits.max_spooled_bytes",
                reason: format!(
                    "must be at least {largest_body} (the body of an input of \
                     limits.max_input_bytes, base64 in JSON), or no largest input could ever \
                     be received"
                ),
            });
        }
        Ok(())
    }

    /// The TPM layer's configuration.
    pub fn tpm_config(&self) -> TpmConfig {
        self.tpm.clone()
    }

    /// Whether `identity` is an operator.
    pub fn is_operator(&self, identity: &str) -> bool {
        self.access.operators.iter().any(|o| o == identity)
    }

    /// Whether `identity` may register functions.
    pub fn may_register_functions(&self, identity: &str) -> bool {
        self.is_operator(identity)
            || self
                .access
                .function_registrars
                .iter()
                .any(|o| o == identity)
    }

    /// The live-instance quota of `identity`: unlimited for operators, `None` if it may not
    /// create instances.
    pub fn creation_quota(&self, identity: &str) -> Option<u32> {
        if self.is_operator(identity) {
            return Some(u32::MAX);
        }
        self.access
            .creators
            .iter()
            .find(|c| c.identity == identity)
            .map(|c| c.max_live_instances)
    }
}

/// Applies one `a.b.c=VALUE` override; VALUE is read as TOML (`23`, `[0, 7]`, `true`,
/// `"text"`), or as a bare string when it is not valid TOML.
fn apply_override(table: &mut toml::Table, spec: &str) -> Result<(), ConfigError> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| ConfigError::Override(spec.into()))?;
    let path: Vec<&str> = key.trim().split('.').collect();
    if path.iter().any(|p| p.is_empty()) {
        return Err(ConfigError::Override(spec.into()));
    }
    let value = toml::from_str::<BTreeMap<String, toml::Value>>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut m| m.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    let (last, parents) = path
        .split_last()
        .ok_or_else(|| ConfigError::Override(spec.into()))?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry((*part).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Override(spec.into()))?;
    }
    current.insert((*last).to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_dotted_and_only_access_and_per_request_limits_reload() {
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let old = Config::from_toml(&format!("[access]\noperators = [\"{a}\"]\n"), &[]).unwrap();
        let new = Config::from_toml(
            &format!(
                "[access]\noperators = [\"{a}\", \"{b}\"]\n[limits]\nmax_wait_seconds = 5\n\
                 max_connections = 8\n[tpm]\ntcti = \"tabrmd\"\n"
            ),
            &[],
        )
        .unwrap();
        assert!(old.changed_keys(&old).is_empty());
        let changed = old.changed_keys(&new);
        assert_eq!(
            changed,
            [
                "access.operators",
                "limits.max_connections",
                "limits.max_wait_seconds",
                "tpm.tcti"
            ]
        );
        let reloadable: Vec<bool> = changed.iter().map(|k| Config::reloadable(k)).collect();
        assert_eq!(reloadable, [true, false, true, false]);
        // A key set in one only (an optional value) counts as changed.
        let mut tls = old.clone();
        tls.tls.cert = Some(PathBuf::from("/etc/arbiter/cert.pem"));
        assert_eq!(old.changed_keys(&tls), ["tls.cert"]);
        assert_eq!(tls.changed_keys(&old), ["tls.cert"]);
    }

    #[test]
    fn the_firmware_log_comes_from_the_systemd_credential_only_for_the_default_path() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let default = AttestationSection::default();
        // Not under systemd: the kernel's file.
        assert_eq!(
            default.firmware_log_source(None),
            Path::new(DEFAULT_FIRMWARE_LOG)
        );
        // Under systemd without the credential (a unit of the operator's own): the same.
        assert_eq!(
            default.firmware_log_source(Some(&dir)),
            Path::new(DEFAULT_FIRMWARE_LOG)
        );
        // With the credential: the credential.
        let credential = dir.join(FIRMWARE_LOG_CREDENTIAL);
        std::fs::write(&credential, b"log").unwrap();
        assert_eq!(default.firmware_log_source(Some(&dir)), credential);
        // The unit's fallback where the host has no log is no log; a log is served whole.
        assert_eq!(firmware_log_content(b"absent".to_vec()), None);
        assert_eq!(firmware_log_content(Vec::new()), None);
        assert_eq!(
            firmware_log_content(vec![0, 0, 0, 0, 3, 0, 0, 0]),
            Some(vec![0, 0, 0, 0, 3, 0, 0, 0])
        );
        // A path the operator chose wins over the credential.
        let configured = AttestationSection {
            firmware_log: PathBuf::from("/run/arbiter/firmware.log"),
            ..AttestationSection::default()
        };
        assert_eq!(
            configured.firmware_log_source(Some(&dir)),
            Path::new("/run/arbiter/firmware.log")
        );
    }

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = Config::from_toml("", &[]).unwrap();
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.tpm.platform_pcrs, vec![0, 2, 4, 7, 9]);
    }

    #[test]
    fn input_ceilings_are_bounded_and_consistent() {
        let c = Config::from_toml("", &[]).unwrap();
        assert_eq!(c.limits.max_input_bytes, 64 << 20);
        assert_eq!(c.limits.max_instance_input_bytes, 256 << 20);
        assert_eq!(c.limits.max_spooled_bytes, 1 << 30);
        for (overrides, key) in [
            (
                "limits.max_input_bytes=1073741824",
                "limits.max_input_bytes",
            ),
            (
                "limits.max_instance_input_bytes=2147483648",
                "limits.max_instance_input_bytes",
            ),
            (
                "limits.max_instance_input_bytes=1048576",
                "limits.max_instance_input_bytes",
            ),
            (
                "limits.max_spooled_bytes=1048576",
                "limits.max_spooled_bytes",
            ),
            (
                "limits.min_body_bytes_per_second=0",
                "limits.min_body_bytes_per_second",
            ),
        ] {
            let e = Config::from_toml("", &[overrides.into()]).unwrap_err();
            assert!(e.to_string().contains(key), "{overrides}: {e}");
        }
        // A 40 MB ciphertext's body: base64 plus the JSON around it.
        assert_eq!(input_body_limit(3), 4 + INPUT_BODY_OVERHEAD);
        assert_eq!(
            input_body_limit(40_000_000),
            53_333_336 + INPUT_BODY_OVERHEAD
        );
    }

    #[test]
    fn overrides_reach_every_key() {
        let c = Config::from_toml(
            "[tpm]\ntcti = \"device:/dev/tpm0\"\n",
            &[
                "tpm.tcti=swtpm:host=127.0.0.1,port=2321".into(),
                "listen=\"127.0.0.1:9000\"".into(),
                "limits.max_body_bytes=1024".into(),
                format!("access.operators=[\"{}\"]", "a".repeat(64)),
            ],
        )
        .unwrap();
        assert_eq!(c.tpm.tcti, "swtpm:host=127.0.0.1,port=2321");
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.limits.max_body_bytes, 1024);
        assert!(c.is_operator(&"a".repeat(64)));
    }

    #[test]
    fn refuses_unknown_keys_weak_pcrs_and_bad_identities() {
        let e = Config::from_toml("lisen = \"x\"", &[]).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let e = Config::from_toml("[tpm]\nplatform_pcrs = [0, 7]", &[]).unwrap_err();
        assert!(e.to_string().contains("weak_platform_pcrs"), "{e}");
        Config::from_toml(
            "[tpm]\nplatform_pcrs = [0, 7]\n[danger]\nweak_platform_pcrs = true",
            &[],
        )
        .unwrap();
        let e = Config::from_toml("[access]\noperators = [\"bob\"]", &[]).unwrap_err();
        assert!(e.to_string().contains("bob"), "{e}");
        let e = Config::from_toml("", &["nonsense".into()]).unwrap_err();
        assert!(e.to_string().contains("KEY=VALUE"), "{e}");
    }

    #[test]
    fn library_disabled_names_must_exist() {
        let c = Config::from_toml("[library]\ndisabled = [\"psi-count\"]\n", &[]).unwrap();
        assert_eq!(c.library.disabled, ["psi-count"]);
        let e = Config::from_toml(
            "[library]\ndisabled = [\"psi-count\", \"nope\", \"zap\"]",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("library.disabled"), "{e}");
        assert!(e.contains("`nope`, `zap`"), "{e}");
        assert!(!e.contains("`psi-count`"), "{e}");
        // Taken at start only: a reload that changes it is refused (a restart applies it).
        let mut other = c.clone();
        other.library.disabled.clear();
        assert_eq!(c.changed_keys(&other), ["library.disabled"]);
        assert!(!Config::reloadable("library.disabled"));
    }

    #[test]
    fn input_size_ceilings_reload_and_the_spool_budget_does_not() {
        let c = Config::default();
        let mut other = c.clone();
        other.limits.max_input_bytes /= 2;
        other.limits.max_instance_input_bytes /= 2;
        other.limits.max_spooled_bytes /= 2;
        let changed = c.changed_keys(&other);
        let reloadable: Vec<(&str, bool)> = changed
            .iter()
            .map(|k| (k.as_str(), Config::reloadable(k)))
            .collect();
        assert_eq!(
            reloadable,
            [
                ("limits.max_input_bytes", true),
                ("limits.max_instance_input_bytes", true),
                ("limits.max_spooled_bytes", false),
            ]
        );
    }
}
