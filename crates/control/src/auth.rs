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
//! People who work in the web workbench sign in there with a password (`[[people]]`,
//! argon2id hashes, never the password itself); the workbench then calls these same
//! services in process, the request carrying a [`SignedIn`] extension that only
//! in-process code can attach (a network client cannot set request extensions). One set
//! of rules, roles and audit serves gRPC, the CLI and the web.
//!
//! People and producing systems share one namespace of identities, in one tokens file:
//! a `role` lets an identity use the control plane (people, and services that approve),
//! a `system` lets it post events to ingestion as that system (the WMS, a carrier
//! gateway). An identity may have both — a warehouse lead who also approves — and
//! four-eyes then keeps them from approving what they caused. The tokens file is TOML:
//! ```toml
//! [[tokens]]
//! token = "…"            # the secret the client sends
//! identity = "alice"
//! role = "approver"
//!
//! [[tokens]]
//! token = "…"
//! identity = "wms-prod"
//! system = "wms"         # may post warehouse events to ingestion; no control-plane role
//!
//! [[clients]]            # client certificates (CN or DNS SAN) and their roles / systems
//! identity = "billing.example.com"
//! role = "senior-approver"
//!
//! [[people]]             # sign-in to the web workbench; `waybill web hash-password` makes the hash
//! identity = "ada"
//! role = "approver"
//! password_hash = "$argon2id$v=19$m=19456,t=2,p=1$…"
//! ```
//! An identity listed both as a person and with a token must have the same role in both.
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

use waybill_domain::{System, topic};

use crate::error::{Error, Result};

/// Roles, lowest first; each includes what the ones before it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Read orders, postings, exceptions, lineage and the audit.
    Viewer,
    /// Viewer, plus workbench actions (assign, retry, resolve, replay).
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
    /// A password, at the web workbench's sign-in.
    Password,
}

/// A request extension: the caller signed in to the web workbench as this principal.
/// Only code in this process can attach it (request extensions are not on the wire), and
/// [`Authenticator::authenticate`] honours it before any credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// Who signed in, with the role the identities file gives them now.
    pub principal: Principal,
    /// Where the browser connected from (audited as the peer).
    pub peer: String,
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
    #[serde(default)]
    people: Vec<PersonEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonEntry {
    identity: String,
    role: Role,
    password_hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    token: String,
    identity: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    system: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    identity: String,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    system: Option<String>,
}

/// What one identity may do.
#[derive(Debug, Clone)]
struct Grant {
    identity: String,
    /// Control-plane role, if any.
    role: Option<Role>,
    /// The system it posts events as, if any.
    system: Option<System>,
}

impl Grant {
    fn parse(path: &Path, identity: String, role: Option<Role>, system: Option<String>) -> Result<Grant, String> {
        if identity.is_empty() {
            return Err(format!("{}: an entry has an empty identity", path.display()));
        }
        let system = match system {
            None => None,
            Some(s) => {
                let sys = s.parse::<System>().ok().filter(|x| topic::INBOUND_SYSTEMS.contains(x));
                let names: Vec<&str> = topic::INBOUND_SYSTEMS.iter().map(|x| x.as_str()).collect();
                Some(sys.ok_or_else(|| {
                    format!(
                        "{}: identity {identity} has system = {s:?}, which does not send events; use one of {}",
                        path.display(),
                        names.join(", ")
                    )
                })?)
            }
        };
        if role.is_none() && system.is_none() {
            return Err(format!(
                "{}: identity {identity} has neither a role (control plane) nor a system (ingestion); give it one",
                path.display()
            ));
        }
        Ok(Grant { identity, role, system })
    }

    fn principal(&self, method: Method) -> Result<Principal> {
        match self.role {
            Some(role) => Ok(Principal { identity: self.identity.clone(), role, method }),
            None => Err(Error::PermissionDenied(format!(
                "{} is a producer identity (system {}) without a control-plane role; give it a role in the tokens file if it must call the control plane",
                self.identity,
                self.system.map_or("none", System::as_str)
            ))),
        }
    }

    fn producer(&self, method: Method) -> Result<Producer> {
        match self.system {
            Some(system) => Ok(Producer { identity: self.identity.clone(), system, method }),
            None => Err(Error::PermissionDenied(format!(
                "{} may not post events: it has no system in the tokens file; add system = \"wms\" (or the system it speaks for) to its entry",
                self.identity
            ))),
        }
    }
}

/// A person who may sign in to the web workbench.
#[derive(Debug, Clone)]
struct Person {
    role: Role,
    /// argon2id PHC string.
    password_hash: String,
}

/// The credentials of one version of the tokens file.
#[derive(Debug, Default)]
struct Credentials {
    tokens: HashMap<String, Grant>,
    clients: HashMap<String, Grant>,
    people: HashMap<String, Person>,
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
            let grant = Grant::parse(path, t.identity, t.role, t.system)?;
            let identity = grant.identity.clone();
            if c.tokens.insert(t.token, grant).is_some() {
                return Err(format!("{}: the token of {identity} is listed twice", path.display()));
            }
        }
        for cl in file.clients {
            let grant = Grant::parse(path, cl.identity, cl.role, cl.system)?;
            c.clients.insert(grant.identity.clone(), grant);
        }
        for p in file.people {
            let where_ = format!("{}: person {}", path.display(), p.identity);
            if p.identity.is_empty() {
                return Err(format!("{}: a [[people]] entry has an empty identity", path.display()));
            }
            password::check_hash(&p.password_hash).map_err(|e| format!("{where_}: {e}"))?;
            let token_role = c.tokens.values().chain(c.clients.values()).find(|g| g.identity == p.identity);
            if let Some(other) = token_role.and_then(|g| g.role).filter(|r| *r != p.role) {
                return Err(format!(
                    "{where_} has role {} but its token or certificate has role {other}; one identity has one role",
                    p.role
                ));
            }
            let person = Person { role: p.role, password_hash: p.password_hash };
            if c.people.insert(p.identity.clone(), person).is_some() {
                return Err(format!("{where_} is listed twice"));
            }
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

    /// The person `identity` as the file has them now, if they may sign in.
    pub fn person(&self, identity: &str) -> Option<Principal> {
        let creds = self.credentials();
        creds.people.get(identity).map(|p| Principal {
            identity: identity.to_string(),
            role: p.role,
            method: Method::Password,
        })
    }

    /// Checks `password` for `identity`. `None` for an unknown identity or a wrong
    /// password (the caller cannot tell which: both take one hash verification).
    pub fn verify_password(&self, identity: &str, password: &str) -> Option<Principal> {
        let creds = self.credentials();
        match creds.people.get(identity) {
            Some(p) if password::verify(&p.password_hash, password) => {
                Some(Principal { identity: identity.to_string(), role: p.role, method: Method::Password })
            }
            Some(_) => None,
            None => {
                // Same work as a real check, so timing does not reveal who exists.
                password::verify(password::decoy(), password);
                None
            }
        }
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

    /// The tokens file (people who sign in to the workbench are in it too).
    pub fn store(&self) -> &TokenStore {
        &self.tokens
    }

    /// The caller of `request`: a person signed in to the workbench (in process), else
    /// the request's credentials.
    pub fn authenticate<T>(&self, request: &tonic::Request<T>) -> Result<Principal> {
        if let Some(s) = request.extensions().get::<SignedIn>() {
            return Ok(s.principal.clone());
        }
        let certs = request.peer_certs();
        let cert_identity = match certs.as_deref().and_then(|c| c.first()) {
            Some(der) => Some(certificate_identity(der)?),
            None => None,
        };
        let bearer = match request.metadata().get("authorization") {
            None => None,
            Some(v) => Some(bearer_token(v.as_bytes())?),
        };
        self.resolve(bearer.as_deref(), cert_identity.as_deref())
    }

    /// Resolves credentials: a bearer token wins over a certificate.
    pub fn resolve(&self, bearer: Option<&str>, cert_identity: Option<&str>) -> Result<Principal> {
        match self.grant(bearer, cert_identity)? {
            Some((grant, method)) => grant.principal(method),
            None => match self.anonymous {
                Some(role) => Ok(Principal { identity: "anonymous".into(), role, method: Method::Anonymous }),
                None => Err(no_credentials()),
            },
        }
    }

    /// Resolves the credentials of a producer posting events: the identity and the one
    /// system it speaks for. `None` when the caller presented no credentials (the caller
    /// decides whether anonymous posting is allowed).
    pub fn resolve_producer(&self, bearer: Option<&str>, cert_identity: Option<&str>) -> Result<Option<Producer>> {
        self.grant(bearer, cert_identity)?.map(|(grant, method)| grant.producer(method)).transpose()
    }

    fn grant(&self, bearer: Option<&str>, cert_identity: Option<&str>) -> Result<Option<(Grant, Method)>> {
        let creds = self.tokens.credentials();
        if let Some(token) = bearer {
            return match creds.tokens.get(token) {
                Some(g) => Ok(Some((g.clone(), Method::Token))),
                None => Err(Error::Unauthenticated(
                    "the bearer token is not in the server's tokens file (expired or rotated?); ask an admin for a current token"
                        .into(),
                )),
            };
        }
        if let Some(identity) = cert_identity {
            return match creds.clients.get(identity) {
                Some(g) => Ok(Some((g.clone(), Method::Certificate))),
                None => Err(Error::PermissionDenied(format!(
                    "client certificate {identity:?} is trusted but has no role or system; add a [[clients]] entry with identity = {identity:?} to the tokens file"
                ))),
            };
        }
        Ok(None)
    }
}

fn no_credentials() -> Error {
    Error::Unauthenticated(
        "no credentials: send `authorization: Bearer <token>` (waybill --token or WAYBILL_TOKEN) or connect with a client certificate"
            .into(),
    )
}

pub use password::hash as hash_password;

/// argon2id password hashes in PHC string form.
mod password {
    use std::sync::OnceLock;

    use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
    use argon2::{Algorithm, Argon2};
    use ring::rand::{SecureRandom, SystemRandom};

    /// The PHC string of `password` with argon2id, the crate's default (OWASP) parameters
    /// and a random salt.
    pub fn hash(password: &str) -> String {
        let mut bytes = [0u8; 16];
        SystemRandom::new().fill(&mut bytes).expect("the operating system's random source");
        let salt = SaltString::encode_b64(&bytes).expect("16 bytes make a valid salt");
        Argon2::default().hash_password(password.as_bytes(), &salt).expect("argon2 with default parameters").to_string()
    }

    /// Whether `password` matches `phc`.
    pub fn verify(phc: &str, password: &str) -> bool {
        PasswordHash::new(phc).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    }

    /// `Ok` when `phc` is an argon2id PHC string.
    pub fn check_hash(phc: &str) -> Result<(), String> {
        let h = PasswordHash::new(phc).map_err(|e| {
            format!("password_hash is not a PHC string ({e}); make one with `waybill web hash-password`")
        })?;
        if h.algorithm != Algorithm::Argon2id.ident() {
            return Err(format!(
                "password_hash uses {}, not argon2id; make one with `waybill web hash-password`",
                h.algorithm
            ));
        }
        Ok(())
    }

    /// A hash of nothing anyone knows, checked for unknown identities.
    pub fn decoy() -> &'static str {
        static DECOY: OnceLock<String> = OnceLock::new();
        DECOY.get_or_init(|| hash("waybill decoy password"))
    }
}

/// Parses an `authorization` header value: `Bearer <token>`.
pub fn bearer_token(value: &[u8]) -> Result<String> {
    let v = std::str::from_utf8(value)
        .map_err(|_| Error::Unauthenticated("the authorization header is not ASCII; send `Bearer <token>`".into()))?;
    let token = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .ok_or_else(|| Error::Unauthenticated("the authorization header must be `Bearer <token>`".into()))?;
    Ok(token.trim().to_string())
}

/// An authenticated producer: who, speaking for which system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    /// Identity (token identity, or certificate CN / SAN).
    pub identity: String,
    /// The one system it may post events as.
    pub system: System,
    /// How it authenticated.
    pub method: Method,
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

    #[test]
    fn people_and_producers_share_one_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.toml");
        std::fs::write(
            &file,
            r#"
[[tokens]]
token = "wwwwwwwwwwwwwwwwwwww"
identity = "wms-prod"
system = "wms"

[[tokens]]
token = "llllllllllllllllllll"
identity = "lena"
role = "approver"
system = "wms"

[[tokens]]
token = "aaaaaaaaaaaaaaaaaaaa"
identity = "alice"
role = "approver"
"#,
        )
        .unwrap();
        let auth = Authenticator::new(TokenStore::open(Some(&file)).unwrap(), None);
        let wms = auth.resolve_producer(Some("wwwwwwwwwwwwwwwwwwww"), None).unwrap().unwrap();
        assert_eq!((wms.identity.as_str(), wms.system), ("wms-prod", System::Wms));
        // A producer without a role cannot use the control plane, a person without a
        // system cannot post events; one identity may do both.
        assert!(
            matches!(auth.resolve(Some("wwwwwwwwwwwwwwwwwwww"), None), Err(Error::PermissionDenied(m)) if m.contains("without a control-plane role"))
        );
        assert!(
            matches!(auth.resolve_producer(Some("aaaaaaaaaaaaaaaaaaaa"), None), Err(Error::PermissionDenied(m)) if m.contains("no system"))
        );
        assert_eq!(auth.resolve(Some("llllllllllllllllllll"), None).unwrap().role, Role::Approver);
        assert_eq!(auth.resolve_producer(Some("llllllllllllllllllll"), None).unwrap().unwrap().system, System::Wms);
        assert_eq!(auth.resolve_producer(None, None).unwrap(), None);
        assert!(matches!(auth.resolve_producer(Some("nope-nope-nope-nope"), None), Err(Error::Unauthenticated(_))));
        // An entry with neither, or a system that sends nothing, is refused at start-up.
        std::fs::write(&file, "[[tokens]]\ntoken = \"xxxxxxxxxxxxxxxxxxxx\"\nidentity = \"x\"\n").unwrap();
        assert!(TokenStore::check_file(&file).unwrap_err().contains("neither a role"));
        std::fs::write(
            &file,
            "[[tokens]]\ntoken = \"xxxxxxxxxxxxxxxxxxxx\"\nidentity = \"x\"\nsystem = \"operator\"\n",
        )
        .unwrap();
        assert!(TokenStore::check_file(&file).unwrap_err().contains("does not send events"));
    }

    #[test]
    fn people_sign_in_with_argon2id_hashes_and_one_role() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tokens.toml");
        let hash = hash_password("correct horse battery");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("correct horse"), "the password itself is never stored");
        std::fs::write(
            &file,
            format!(
                "[[tokens]]\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\nidentity = \"ada\"\nrole = \"approver\"\n\n\
                 [[people]]\nidentity = \"ada\"\nrole = \"approver\"\npassword_hash = {hash:?}\n"
            ),
        )
        .unwrap();
        let store = TokenStore::open(Some(&file)).unwrap();
        let ada = store.verify_password("ada", "correct horse battery").expect("the right password");
        assert_eq!((ada.identity.as_str(), ada.role, ada.method), ("ada", Role::Approver, Method::Password));
        assert_eq!(store.verify_password("ada", "correct horse"), None);
        assert_eq!(store.verify_password("nobody", "correct horse battery"), None);
        assert_eq!(store.person("ada").map(|p| p.role), Some(Role::Approver));
        assert_eq!(store.person("nobody"), None);

        // A signed-in person, attached in process, is the caller whatever else is sent.
        let auth = Authenticator::new(store, None);
        let mut r = tonic::Request::new(());
        r.metadata_mut().insert("authorization", "Bearer not-a-token-at-all".parse().unwrap());
        r.extensions_mut().insert(SignedIn { principal: ada.clone(), peer: "127.0.0.1:1".into() });
        assert_eq!(auth.authenticate(&r).unwrap(), ada);

        // One identity, one role; hashes must be argon2id PHC strings.
        std::fs::write(
            &file,
            format!(
                "[[tokens]]\ntoken = \"aaaaaaaaaaaaaaaaaaaa\"\nidentity = \"ada\"\nrole = \"viewer\"\n\n\
                 [[people]]\nidentity = \"ada\"\nrole = \"approver\"\npassword_hash = {hash:?}\n"
            ),
        )
        .unwrap();
        assert!(TokenStore::check_file(&file).unwrap_err().contains("one identity has one role"));
        std::fs::write(&file, "[[people]]\nidentity = \"ada\"\nrole = \"approver\"\npassword_hash = \"hunter2\"\n")
            .unwrap();
        assert!(TokenStore::check_file(&file).unwrap_err().contains("waybill web hash-password"));
    }
}
