//! The `[web]` section of the configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the web workbench.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Listen address, e.g. `0.0.0.0:8423`; empty (the default) turns the workbench off.
    /// It needs the control plane (`control.listen`): it calls the same services.
    pub listen: String,
    /// Server certificate chain (PEM). With `tls_key`, the workbench speaks HTTPS and
    /// its session cookie is `Secure`.
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Mark the session cookie `Secure` although this listener speaks plain HTTP: set it
    /// when a TLS-terminating proxy or ingress sits in front.
    pub behind_tls_proxy: bool,
    /// A session ends after this many minutes without a request.
    pub session_idle_minutes: u64,
    /// A session ends this many hours after sign-in, however busy.
    pub session_max_hours: u64,
    /// Failed sign-ins (per identity and per address) allowed before the next attempt
    /// must wait; the wait doubles with each further failure.
    pub failed_signins_allowed: u32,
    /// The "stuck" list's default: orders unchanged for at least this many minutes.
    pub stuck_after_minutes: u64,
    /// How often the dashboard samples the live metrics, in seconds.
    pub sample_every_secs: u64,
    /// The engineers' Grafana dashboard, linked from the business dashboard (empty: no
    /// link).
    pub grafana_url: String,
    /// The legal entities' codes, for the lists' Entity filter (set from `[entities]`
    /// when the node starts, not written here); empty: one company, no filter.
    #[serde(skip)]
    pub entities: Vec<String>,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            listen: String::new(),
            tls_cert: None,
            tls_key: None,
            behind_tls_proxy: false,
            session_idle_minutes: 30,
            session_max_hours: 12,
            failed_signins_allowed: 5,
            stuck_after_minutes: 60,
            sample_every_secs: 5,
            grafana_url: String::new(),
            entities: Vec::new(),
        }
    }
}

/// A `[web]` setting that is wrong: the dotted key and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// Dotted key, e.g. `web.tls_key`.
    pub key: &'static str,
    /// What is wrong and what to do.
    pub problem: String,
}

impl WebConfig {
    /// Checks the settings; `control_on` says whether the control plane is enabled.
    pub fn validate(&self, control_on: bool) -> Result<(), Invalid> {
        if self.listen.is_empty() {
            return Ok(());
        }
        self.listen.parse::<SocketAddr>().map_err(|_| Invalid {
            key: "web.listen",
            problem: format!(
                "{:?} is not an address like 127.0.0.1:8423 (leave it empty to turn the workbench off)",
                self.listen
            ),
        })?;
        if !control_on {
            return Err(Invalid {
                key: "web.listen",
                problem: "the workbench calls the control plane's services, but control.listen is empty; \
                          enable the control plane or leave web.listen empty"
                    .into(),
            });
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(Invalid {
                key: if self.tls_cert.is_some() { "web.tls_key" } else { "web.tls_cert" },
                problem: "set both web.tls_cert and web.tls_key, or neither".into(),
            });
        }
        for (key, v) in [
            ("web.session_idle_minutes", self.session_idle_minutes),
            ("web.session_max_hours", self.session_max_hours),
            ("web.sample_every_secs", self.sample_every_secs),
        ] {
            if v == 0 {
                return Err(Invalid { key, problem: "must be at least 1".into() });
            }
        }
        if self.failed_signins_allowed == 0 {
            return Err(Invalid {
                key: "web.failed_signins_allowed",
                problem: "must be at least 1 (a typo must not lock a person out)".into(),
            });
        }
        Ok(())
    }

    /// Whether the session cookie is `Secure`.
    pub fn secure_cookies(&self) -> bool {
        self.tls_cert.is_some() || self.behind_tls_proxy
    }

    pub(crate) fn idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_minutes * 60)
    }

    pub(crate) fn max_age(&self) -> Duration {
        Duration::from_secs(self.session_max_hours * 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workbench_needs_the_control_plane_and_both_tls_files() {
        let mut c = WebConfig { listen: "127.0.0.1:0".into(), ..WebConfig::default() };
        assert!(c.validate(true).is_ok());
        assert_eq!(c.validate(false).unwrap_err().key, "web.listen");
        c.tls_cert = Some("cert.pem".into());
        assert_eq!(c.validate(true).unwrap_err().key, "web.tls_key");
        c.tls_key = Some("key.pem".into());
        assert!(c.validate(true).is_ok() && c.secure_cookies());
        c.listen = "nowhere".into();
        assert!(c.validate(true).unwrap_err().problem.contains("not an address"));
        assert!(WebConfig::default().validate(false).is_ok(), "off by default, whatever else");
    }
}
