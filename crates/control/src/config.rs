//! The `[control]` section of the configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{Role, TokenStore};

/// Settings of the gRPC control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Listen address of the gRPC server; empty disables the control plane.
    pub listen: String,
    /// Tokens file (TOML: `[[tokens]]` token/identity/role, `[[clients]]`
    /// identity/role for client certificates). Re-read when it changes.
    pub tokens_file: Option<PathBuf>,
    /// Server certificate chain (PEM). With `tls_key`, the server speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA (PEM) that signs client certificates; set it to accept mutual TLS. Clients
    /// without a certificate may still use a bearer token.
    pub client_ca: Option<PathBuf>,
    /// Accept calls without credentials as identity `anonymous` (only on a loopback
    /// `listen` address: for the local demo).
    pub allow_anonymous: bool,
    /// Role of anonymous callers when `allow_anonymous` is set.
    pub anonymous_role: String,
    /// How long Approve/Reject wait for the saga's answer, in milliseconds.
    pub decision_timeout_ms: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            listen: "127.0.0.1:8421".into(),
            tokens_file: None,
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            allow_anonymous: false,
            anonymous_role: "viewer".into(),
            decision_timeout_ms: 10_000,
        }
    }
}

/// A `[control]` setting that is wrong: the dotted key and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key, e.g. `control.tls_key`.
    pub key: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
}

fn invalid(key: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid { key, problem: problem.into() }
}

impl ControlConfig {
    /// The parsed listen address, `None` when disabled.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, Invalid> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|_| {
            invalid(
                "control.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:8421 (leave it empty to disable the control plane)",
                    self.listen
                ),
            )
        })
    }

    /// The role of anonymous callers, `None` when they are refused.
    pub fn anonymous(&self) -> Result<Option<Role>, Invalid> {
        if !self.allow_anonymous {
            return Ok(None);
        }
        self.anonymous_role.parse().map(Some).map_err(|p: String| invalid("control.anonymous_role", p))
    }

    /// Approve/Reject wait this long for the saga.
    pub fn decision_timeout(&self) -> Duration {
        Duration::from_millis(self.decision_timeout_ms)
    }

    /// Checks every value; reads the files it names.
    pub fn validate(&self) -> Result<(), Invalid> {
        let Some(addr) = self.listen_addr()? else { return Ok(()) };
        self.anonymous_role.parse::<Role>().map_err(|p| invalid("control.anonymous_role", p))?;
        if self.allow_anonymous && !addr.ip().is_loopback() {
            return Err(invalid(
                "control.allow_anonymous",
                format!(
                    "anonymous calls are only allowed on a loopback address, but control.listen is {addr}; listen on 127.0.0.1 or turn allow_anonymous off and hand out tokens"
                ),
            ));
        }
        validate_tls(
            ["control.tls_cert", "control.tls_key", "control.client_ca"],
            &self.tls_cert,
            &self.tls_key,
            &self.client_ca,
        )?;
        if let Some(p) = &self.tokens_file {
            TokenStore::check_file(p).map_err(|problem| invalid("control.tokens_file", problem))?;
        }
        if self.decision_timeout_ms == 0 {
            return Err(invalid("control.decision_timeout_ms", "must be at least 1"));
        }
        Ok(())
    }
}

/// Checks a listener's TLS files (`keys` name the certificate, key and client CA
/// settings): certificate and key come in pairs, mutual TLS needs TLS, each file is PEM.
pub fn validate_tls(
    keys: [&'static str; 3],
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    client_ca: &Option<PathBuf>,
) -> Result<(), Invalid> {
    let [cert_key, key_key, ca_key] = keys;
    match (cert, key) {
        (Some(_), None) => {
            return Err(invalid(key_key, format!("{cert_key} is set, so {key_key} must name the private key (PEM)")));
        }
        (None, Some(_)) => {
            return Err(invalid(cert_key, format!("{key_key} is set, so {cert_key} must name the certificate (PEM)")));
        }
        _ => {}
    }
    if client_ca.is_some() && cert.is_none() {
        return Err(invalid(
            ca_key,
            format!("mutual TLS needs the server to speak TLS: set {cert_key} and {key_key} too"),
        ));
    }
    for (k, path) in [(cert_key, cert), (key_key, key), (ca_key, client_ca)] {
        if let Some(p) = path {
            let text =
                std::fs::read_to_string(p).map_err(|e| invalid(k, format!("cannot read {}: {e}", p.display())))?;
            if !text.contains("-----BEGIN ") {
                return Err(invalid(k, format!("{} is not a PEM file", p.display())));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_only_on_loopback() {
        let mut c = ControlConfig { allow_anonymous: true, ..ControlConfig::default() };
        assert!(c.validate().is_ok());
        c.listen = "0.0.0.0:8421".into();
        let e = c.validate().unwrap_err();
        assert_eq!(e.key, "control.allow_anonymous");
        c.listen = "[::1]:8421".into();
        assert!(c.validate().is_ok());
        c.anonymous_role = "root".into();
        assert_eq!(c.validate().unwrap_err().key, "control.anonymous_role");
    }

    #[test]
    fn tls_settings_come_in_pairs() {
        let c = ControlConfig { tls_cert: Some("x.pem".into()), ..ControlConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "control.tls_key");
        let c = ControlConfig { client_ca: Some("ca.pem".into()), ..ControlConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "control.client_ca");
        let c = ControlConfig { listen: "nowhere".into(), ..ControlConfig::default() };
        assert_eq!(c.validate().unwrap_err().key, "control.listen");
    }
}
