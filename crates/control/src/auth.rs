//! Who is calling, and what they may do.
//!
//! Credentials, tried in this order:
//! 1. a bearer token (`authorization: Bearer <token>`), looked up in the tokens file;
//! 2. a client certificate (mutual TLS): its subject CN, or else its first DNS
//!    subject-alternative name, is the identity, and its role comes from `[[clients]]` in
//!    the tokens file;
//! 3. nothing: refused with `UNAUTHENTICATED`, unless `control.allow_anonymous` is set
//!    (loopback only), in which case the caller is `anonymous` with
//!    `control.anonymous_role`.
//!
//! The tokens file is TOML:
//! ```toml
//! [[tokens]]
//! token = "…"            # the secret the client sends
//! identity = "alice"
//! role = "approver"
//!
//! [[clients]]            # client certificates (CN or DNS SAN) and their roles
//! identity = "billing.example.com"
//! role = "senior-approver"
//! ```
//! It is re-read when its modification time or size changes (checked with one `stat` per
//! request), so tokens rotate without a restart. A file that becomes unreadable or
//! invalid keeps the previous credentials in force and logs an error.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Roles, lowest first; each includes what the ones before it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read orders, postings, exceptions, lineage and the audit.
    Viewer,
    /// Viewer, plus workbench actions (retry, resolve, replay).
    Operator,
    /// Operator, plus approve and reject held postings up to the role's limit.
    Approver,
    /// Approver with a higher limit.
    SeniorApprover,
    /// Everything.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 5] = [Role::Viewer, Role::Operator, Role::Approver, Role::SeniorApprover, Role::Admin];

    /// The name used in files, headers and the posting policy's `approval_limits`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::SeniorApprover => "senior-approver",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| {
            format!("{s:?} is not a role; use one of viewer, operator, approver, senior-approver, admin")
        })
    }
}

/// How a caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A bearer token from the tokens file.
    Token,
    /// A client certificate.
    Certificate,
    /// Nothing (allowed by configuration on loopback).
    Anonymous,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Identity (token identity, certificate CN / SAN, or `anonymous`).
    pub identity: String,
    /// Role.
    pub role: Role,
    /// How they authenticated.
    pub method: Method,
}

impl Principal {
    /// `Ok` when the caller's role is at least `needed`; otherwise `PERMISSION_DENIED`
    /// naming what `what` needs.
    pub fn require(&self, needed: Role, what: &str) -> Result<()> {
        if self.role >= needed {
            return Ok(());
        }
        let allowed: Vec<&str> = Role::ALL.iter().filter(|r| **r >= needed).map(|r| r.as_str()).collect();
        Err(Error::PermissionDenied(format!(
            "{what} needs role {}; {} has role {} — ask an admin for a token with a higher role",
            allowed.join(", "),
            self.identity,
            self.role
        )))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    #[serde(default)]
    clients: Vec<ClientEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    identity: String,
    role: Role,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    identity: String,
    role: Role,
}

/// The credentials of one version of the tokens file.
#[derive(Debug, Default)]
struct Credentials {
    tokens: HashMap<String, (String, Role)>,
    clients: HashMap<String, Role>,
}

impl Credentials {
    fn parse(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        use figment::providers::Format as _;
        let file: TokensFile = figment::Figment::from(figment::providers::Toml::string(&text))
            .extract()
            .map_err(|e| format!("{} is not a valid tokens file: {e}", path.display()))?;
        let mut c = Credentials::default();
        for t in file.tokens {
            if t.token.len() < 16 {
                return Err(format!(
                    "{}: the token of {} is shorter than 16 characters; use a long random token",
                    path.display(),
                    t.identity
                ));
            }
            if t.identity.is_empty() {
                return Err(format!("{}: a [[tokens]] entry has an empty identity", path.display()));
            }
            if c.tokens.insert(t.token, (t.identity.clone(), t.role)).is_some() {
                return Err(format!("{}: the token of {} is listed twice", path.display(), t.identity));
            }
        }
        for cl in file.clients {
            c.clients.insert(cl.identity, cl.role);
        }
        Ok(c)
    }
}

type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

/// The tokens file, re-read when it changes.
#[derive(Debug)]
pub struct TokenStore {
    path: Option<PathBuf>,
    current: RwLock<(Stamp, Arc<Credentials>)>,
}

impl TokenStore {
    /// Loads `path` (none: no tokens and no client mappings). A missing or invalid file
    /// is an error here, at start-up.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        let creds = match path {
            None => Credentials::default(),
            Some(p) => {
                Credentials::parse(p).map_err(|problem| Error::Config { key: "control.tokens_file", problem })?
            }
        };
        let st = path.and_then(stamp);
        Ok(TokenStore { path: path.map(Path::to_path_buf), current: RwLock::new((st, Arc::new(creds))) })
    }

    /// Checks that `path` is a valid tokens file (for configuration validation).
    pub fn check_file(path: &Path) -> Result<(), String> {
        Credentials::parse(path).map(|_| ())
    }

    fn credentials(&self) -> Arc<Credentials> {
        let Some(path) = &self.path else {
            return self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone();
        };
        let now = stamp(path);
        {
            let cur = self.current.read().unwrap_or_else(|p| p.into_inner());
            if cur.0 == now {
                return cur.1.clone();
            }
        }
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if cur.0 != now {
            match Credentials::parse(path) {
                Ok(c) => {
                    tracing::info!(path = %path.display(), tokens = c.tokens.len(), clients = c.clients.len(), "tokens file reloaded");
                    *cur = (now, Arc::new(c));
                }
                Err(problem) => {
                    tracing::error!(error = %problem, "tokens file changed but cannot be used; keeping the previous credentials");
                    cur.0 = now;
                }
            }
        }
        cur.1.clone()
    }
}

/// Decides who a caller is.
#[derive(Debug)]
pub struct Authenticator {
    tokens: TokenStore,
    anonymous: Option<Role>,
}

impl Authenticator {
    /// Authenticates with `tokens`; `anonymous` is the role of callers without
    /// credentials, `None` to refuse them.
    pub fn new(tokens: TokenStore, anonymous: Option<Role>) -> Self {
        Authenticator { tokens, anonymous }
    }

    /// The caller of `request`.
    pub fn authenticate<T>(&self, request: &tonic::Request<T>) -> Result<Principal> {
        let certs = request.peer_certs();
        let cert_identity = match certs.as_deref().and_then(|c| c.first()) {
            Some(der) => Some(certificate_identity(der)?),
            None => None,
        };
        let bearer = match request.metadata().get("authorization") {
            None => None,
            Some(v) => {
                let v = v.to_str().map_err(|_| {
                    Error::Unauthenticated("the authorization header is not ASCII; send `Bearer <token>`".into())
                })?;
                let token = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).ok_or_else(|| {
                    Error::Unauthenticated("the authorization header must be `Bearer <token>`".into())
                })?;
                Some(token.trim().to_string())
            }
        };
        self.resolve(bearer.as_deref(), cert_identity.as_deref())
    }

    /// Resolves credentials: a bearer token wins over a certificate.
    pub fn resolve(&self, bearer: Option<&str>, cert_identity: Option<&str>) -> Result<Principal> {
        let creds = self.tokens.credentials();
        if let Some(token) = bearer {
            return match creds.tokens.get(token) {
                Some((identity, role)) => Ok(Principal { identity: identity.clone(), role: *role, method: Method::Token }),
                None => Err(Error::Unauthenticated(
                    "the bearer token is not in the server's tokens file (expired or rotated?); ask an admin for a current token"
                        .into(),
                )),
            };
        }
        if let Some(identity) = cert_identity {
            return match creds.clients.get(identity) {
                Some(role) => {
                    Ok(Principal { identity: identity.to_string(), role: *role, method: Method::Certificate })
                }
                None => Err(Error::PermissionDenied(format!(
                    "client certificate {identity:?} is trusted but has no role; add a [[clients]] entry with identity = {identity:?} to the tokens file"
                ))),
            };
        }
        match self.anonymous {
            Some(role) => Ok(Principal { identity: "anonymous".into(), role, method: Method::Anonymous }),
            None => Err(Error::Unauthenticated(
                "no credentials: send `authorization: Bearer <token>` (waybill --token or WAYBILL_TOKEN) or connect with a client certificate"
                    .into(),
            )),
        }
    }
}

/// The identity in a client certificate: the subject's common name, or else its first
/// DNS subject-alternative name.
pub fn certificate_identity(der: &CertificateDer<'_>) -> Result<String> {
    let cert = webpki::EndEntityCert::try_from(der)
        .map_err(|e| Error::Unauthenticated(format!("the client certificate cannot be parsed: {e}")))?;
    if let Some(cn) = common_name(cert.subject()) {
        return Ok(cn);
    }
    cert.valid_dns_names().next().map(str::to_string).ok_or_else(|| {
        Error::Unauthenticated(
            "the client certificate has neither a subject CN nor a DNS name; issue one with a CN".into(),
        )
    })
}

/// The first common name (OID 2.5.4.3) in a DER-encoded X.501 name.
fn common_name(subject: &[u8]) -> Option<String> {
    const CN_OID: [u8; 5] = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = subject.windows(CN_OID.len()).position(|w| w == CN_OID)? + CN_OID.len();
    let rest = subject.get(at..)?;
    let (tag, len) = (*rest.first()?, *rest.get(1)? as usize);
    // UTF8String, PrintableString, IA5String, T61String; short-form lengths only (a CN
    // is at most 64 characters).
    if !matches!(tag, 0x0c | 0x13 | 0x16 | 0x14) || len >= 0x80 {
        return None;
    }
    let value = rest.get(2..2 + len)?;
    String::from_utf8(value.to_vec()).ok().filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Viewer < Role::Approver && Role::Approver < Role::SeniorApprover);
        assert_eq!("senior-approver".parse::<Role>().unwrap(), Role::SeniorApprover);
        assert!("boss".parse::<Role>().unwrap_err().contains("viewer"));
    }

    #[test]
    fn tokens_rotate_without_restart() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.toml");
        std::fs::write(&file, "[[tokens]]\ntoken = \"aaaaaaaaaaaaaaaa\"\nidentity = \"alice\"\nrole = \"approver\"\n")
            .unwrap();
        let auth = Authenticator::new(TokenStore::open(Some(&file)).unwrap(), None);
        assert_eq!(auth.resolve(Some("aaaaaaaaaaaaaaaa"), None).unwrap().identity, "alice");
        std::fs::write(
            &file,
            "[[tokens]]\ntoken = \"bbbbbbbbbbbbbbbbbbbb\"\nidentity = \"alice\"\nrole = \"viewer\"\n",
        )
        .unwrap();
        assert!(matches!(auth.resolve(Some("aaaaaaaaaaaaaaaa"), None), Err(Error::Unauthenticated(_))));
        assert_eq!(auth.resolve(Some("bbbbbbbbbbbbbbbbbbbb"), None).unwrap().role, Role::Viewer);
        // A broken file keeps the last good credentials.
        std::fs::write(&file, "[[tokens]]\ntoken = 3\n").unwrap();
        assert_eq!(auth.resolve(Some("bbbbbbbbbbbbbbbbbbbb"), None).unwrap().role, Role::Viewer);
        assert!(matches!(auth.resolve(None, None), Err(Error::Unauthenticated(m)) if m.contains("Bearer")));
    }
}
