//! The `[keylime]` configuration section: whether the daemon offers Keylime's agent
//! interface (pull model, API 2.x), where its listener and the registrar and verifier are,
//! and which EK it registers. Off by default; checked before anything starts.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::tpm::EkAlgorithm;

/// `[keylime]` (docs/fleet.md, "The daemon's side").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KeylimeSection {
    /// Whether the agent interface runs at all.
    pub enabled: bool,
    /// Where the agent listener (HTTPS, mutual TLS) listens.
    pub listen: SocketAddr,
    /// The IP registered with the registrar (where the verifier and tenant connect);
    /// defaults to `listen`'s.
    pub contact_ip: Option<IpAddr>,
    /// The port registered with the registrar; defaults to `listen`'s.
    pub contact_port: Option<u16>,
    /// Keylime's CA (PEM, one or more certificates): clients of the agent listener must
    /// present a certificate chaining to it.
    pub ca_certificate: Option<PathBuf>,
    /// The registrar's agent-facing URL, `http://host:port` or `https://host:port`.
    pub registrar: Option<String>,
    /// Trust anchor (PEM) for an `https` registrar.
    pub registrar_ca: Option<PathBuf>,
    /// The agent UUID; derived from the attestation key and kept in the state directory
    /// when absent.
    pub uuid: Option<String>,
    /// Which EK is registered: `rsa2048` or `ecc-p384`.
    pub ek: String,
    /// The verifier's URL (`https://host:port`), polled for this agent's status; no polling
    /// when absent.
    pub verifier: Option<String>,
    /// Client certificate (PEM) for the verifier, chaining to Keylime's CA.
    pub client_certificate: Option<PathBuf>,
    /// Its private key (PEM, PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
    /// How often the verifier is polled.
    pub poll_interval_seconds: u64,
}

impl Default for KeylimeSection {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9002)),
            contact_ip: None,
            contact_port: None,
            ca_certificate: None,
            registrar: None,
            registrar_ca: None,
            uuid: None,
            ek: "rsa2048".into(),
            verifier: None,
            client_certificate: None,
            client_key: None,
            poll_interval_seconds: 2,
        }
    }
}

/// A URL of the registrar or verifier, split: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Whether TLS is used.
    pub https: bool,
    /// The host (name or address, without brackets).
    pub host: String,
    /// The port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `http://host:port` or `https://host:port` (an optional trailing `/`).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(format!("`{url}` does not start with http:// or https://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(format!(
                "`{url}` has a path; give only scheme, host and port"
            ));
        }
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("`{url}` has no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("`{url}` has no host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("`{url}` has no valid port"))?;
        Ok(Self {
            https,
            host: host.to_owned(),
            port,
        })
    }

    /// `host:port` as a connect address (IPv6 bracketed).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl KeylimeSection {
    /// The EK algorithm of `ek`.
    pub fn ek_algorithm(&self) -> Result<EkAlgorithm, ConfigError> {
        match self.ek.as_str() {
            "rsa2048" => Ok(EkAlgorithm::Rsa2048),
            "ecc-p384" => Ok(EkAlgorithm::EccNistP384),
            other => Err(ConfigError::Invalid {
                key: "keylime.ek",
                reason: format!(
                    "`{other}` is not an EK this daemon registers: use `rsa2048` or `ecc-p384`"
                ),
            }),
        }
    }

    /// The registrar's endpoint.
    pub fn registrar_endpoint(&self) -> Result<Endpoint, ConfigError> {
        let url = self.registrar.as_deref().ok_or(ConfigError::Invalid {
            key: "keylime.registrar",
            reason: "required when keylime.enabled = true (e.g. \"http://127.0.0.1:8890\")".into(),
        })?;
        Endpoint::parse(url).map_err(|reason| ConfigError::Invalid {
            key: "keylime.registrar",
            reason,
        })
    }

    /// The verifier's endpoint, when polling is configured.
    pub fn verifier_endpoint(&self) -> Result<Option<Endpoint>, ConfigError> {
        let Some(url) = self.verifier.as_deref() else {
            return Ok(None);
        };
        let endpoint = Endpoint::parse(url).map_err(|reason| ConfigError::Invalid {
            key: "keylime.verifier",
            reason,
        })?;
        if !endpoint.https {
            return Err(ConfigError::Invalid {
                key: "keylime.verifier",
                reason: "the verifier is reached over https (mutual TLS) only".into(),
            });
        }
        Ok(Some(endpoint))
    }

    /// The address registered with the registrar, given the listener's bound address.
    pub fn contact(&self, bound: SocketAddr) -> (IpAddr, u16) {
        (
            self.contact_ip.unwrap_or(bound.ip()),
            self.contact_port.unwrap_or(bound.port()),
        )
    }

    /// Checks the section when enabled: the CA file, the registrar URL (and its CA for
    /// https), the EK, the UUID's form, the verifier with its client certificate and key,
    /// and an unspecified contact address.
    pub fn validate(&self, api_listen: SocketAddr) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        let invalid = |key: &'static str, reason: String| ConfigError::Invalid { key, reason };
        let ca = self.ca_certificate.as_ref().ok_or_else(|| {
            invalid(
                "keylime.ca_certificate",
                "required when keylime.enabled = true: Keylime's CA certificate (PEM), \
                 which the verifier's and tenant's client certificates chain to"
                    .into(),
            )
        })?;
        if !ca.is_file() {
            return Err(invalid(
                "keylime.ca_certificate",
                format!("{} is not a readable file", ca.display()),
            ));
        }
        let registrar = self.registrar_endpoint()?;
        match (&self.registrar_ca, registrar.https) {
            (None, true) => {
                return Err(invalid(
                    "keylime.registrar_ca",
                    "required for an https registrar: the CA its certificate chains to".into(),
                ));
            }
            (Some(p), true) if !p.is_file() => {
                return Err(invalid(
                    "keylime.registrar_ca",
                    format!("{} is not a readable file", p.display()),
                ));
            }
            _ => {}
        }
        self.ek_algorithm()?;
        if let Some(uuid) = &self.uuid
            && !super::identity::is_agent_id(uuid)
        {
            return Err(invalid(
                "keylime.uuid",
                format!(
                    "`{uuid}` is not an agent id Keylime accepts (letters, digits, `-`, at most 80)"
                ),
            ));
        }
        if self.verifier_endpoint()?.is_some() {
            for (key, path) in [
                ("keylime.client_certificate", &self.client_certificate),
                ("keylime.client_key", &self.client_key),
            ] {
                match path {
                    None => {
                        return Err(invalid(
                            key,
                            "required with keylime.verifier: the verifier accepts only clients \
                             chaining to Keylime's CA"
                                .into(),
                        ));
                    }
                    Some(p) if !p.is_file() => {
                        return Err(invalid(
                            key,
                            format!("{} is not a readable file", p.display()),
                        ));
                    }
                    Some(_) => {}
                }
            }
            if self.poll_interval_seconds == 0 {
                return Err(invalid(
                    "keylime.poll_interval_seconds",
                    "must be at least 1".into(),
                ));
            }
        }
        let (ip, port) = self.contact(self.listen);
        if ip.is_unspecified() {
            return Err(invalid(
                "keylime.contact_ip",
                format!(
                    "the listener's address {ip} cannot be reached by the verifier: set \
                     keylime.contact_ip to the address it connects to"
                ),
            ));
        }
        if self.contact_port == Some(0) {
            let _ = port;
            return Err(invalid(
                "keylime.contact_port",
                "port 0 cannot be registered".into(),
            ));
        }
        if self.listen == api_listen && self.listen.port() != 0 {
            return Err(invalid(
                "keylime.listen",
                format!("{} is also the API's address (listen)", self.listen),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn invalid_key(text: &str) -> String {
        match Config::from_toml(text, &[]) {
            Err(ConfigError::Invalid { key, .. }) => key.to_owned(),
            other => panic!("expected an invalid value, got {other:?}"),
        }
    }

    #[test]
    fn off_by_default_and_checked_when_enabled() {
        assert!(!Config::from_toml("", &[]).unwrap().keylime.enabled);
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let base = format!(
            "[keylime]\nenabled = true\nca_certificate = \"{}\"\n",
            ca.display()
        );
        assert_eq!(
            invalid_key("[keylime]\nenabled = true\n"),
            "keylime.ca_certificate"
        );
        assert_eq!(invalid_key(&base), "keylime.registrar");
        let ok = format!("{base}registrar = \"http://127.0.0.1:8890\"\n");
        Config::from_toml(&ok, &[]).unwrap();
        assert_eq!(
            invalid_key(&format!("{base}registrar = \"127.0.0.1:8890\"\n")),
            "keylime.registrar"
        );
        assert_eq!(
            invalid_key(&format!("{base}registrar = \"https://127.0.0.1:8890\"\n")),
            "keylime.registrar_ca"
        );
        assert_eq!(
            invalid_key(&format!("{ok}ek = \"ecc-p256\"\n")),
            "keylime.ek"
        );
        assert_eq!(
            invalid_key(&format!("{ok}uuid = \"a/b\"\n")),
            "keylime.uuid"
        );
        assert_eq!(
            invalid_key(&format!("{ok}verifier = \"http://127.0.0.1:8881\"\n")),
            "keylime.verifier"
        );
        assert_eq!(
            invalid_key(&format!("{ok}verifier = \"https://127.0.0.1:8881\"\n")),
            "keylime.client_certificate"
        );
        assert_eq!(
            invalid_key(&format!("{ok}listen = \"0.0.0.0:9002\"\n")),
            "keylime.contact_ip"
        );
        Config::from_toml(
            &format!("{ok}listen = \"0.0.0.0:9002\"\ncontact_ip = \"192.0.2.1\"\n"),
            &[],
        )
        .unwrap();
        assert!(matches!(
            Config::from_toml(&format!("{ok}registar = \"x\"\n"), &[]),
            Err(ConfigError::Parse(_))
        ));
    }

    #[test]
    fn the_shipped_example_names_real_keys() {
        let text = include_str!("../../../packaging/arbiterd.toml");
        let start = text
            .find("# [keylime]")
            .expect("the example has a [keylime] section");
        let section: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| {
                if l.starts_with("enabled") {
                    "enabled = false"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed: Config = toml::from_str(&section).expect("the example parses");
        assert_eq!(parsed.keylime.poll_interval_seconds, 2);
        assert_eq!(parsed.keylime.ek_algorithm().unwrap(), EkAlgorithm::Rsa2048);
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://[::1]:8881/").unwrap();
        assert!(e.https);
        assert_eq!(e.authority(), "[::1]:8881");
        assert!(Endpoint::parse("http://h:0").is_err());
        assert!(Endpoint::parse("http://h:1/path").is_err());
        assert!(Endpoint::parse("ftp://h:1").is_err());
    }
}
