//! `waybill schemas`: the schema catalog against what is deployed — a `schemas/` folder
//! of the last release or a Confluent-compatible registry (`check`) — and registering the
//! catalog in a company registry (`push`). The judging is `waybill_schema::release`'s;
//! this module reads folders and talks HTTP.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use waybill_schema::release::{Deployed, DeployedVersion, Report};
use waybill_schema::{Levels, Registry, changelog};

/// A Confluent-compatible registry (Confluent, Karapace, Apicurio's ccompat API, or
/// Waybill's own), with basic-auth or bearer credentials from a file.
#[derive(Debug)]
pub struct RegistryClient {
    base: String,
    authorization: Option<String>,
    agent: ureq::Agent,
}

/// The media type Confluent's clients send.
const MEDIA: &str = "application/vnd.schemaregistry.v1+json";

impl RegistryClient {
    /// A client for `url`. `credentials` is a file holding `user:password` (HTTP basic,
    /// Confluent's `basic.auth.user.info`) or `Bearer <token>`, on its first line.
    pub fn new(url: &str, credentials: Option<&Path>) -> anyhow::Result<RegistryClient> {
        if !url.starts_with("http://") && !url.starts_with("https://") {
            bail!(
                "{url:?} is not a registry URL; give http://host:port or https://host:port (a folder is a path, not a URL)"
            );
        }
        let authorization = match credentials {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the registry credentials {}", path.display()))?;
                let line = text.lines().next().unwrap_or_default().trim();
                if let Some(token) = line.strip_prefix("Bearer ").or_else(|| line.strip_prefix("bearer ")) {
                    Some(format!("Bearer {}", token.trim()))
                } else if line.contains(':') {
                    Some(format!("Basic {}", base64(line.as_bytes())))
                } else {
                    bail!(
                        "{}: the first line must be `user:password` (basic auth) or `Bearer <token>`",
                        path.display()
                    );
                }
            }
        };
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Ok(RegistryClient { base: url.trim_end_matches('/').to_string(), authorization, agent })
    }

    /// `GET path`: status and JSON body.
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        let mut req = self.agent.get(format!("{}{path}", self.base)).header("Accept", MEDIA);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        self.answer("GET", path, req.call())
    }

    /// `PUT path` with a JSON body: status and JSON body.
    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let mut req =
            self.agent.put(format!("{}{path}", self.base)).header("Content-Type", MEDIA).header("Accept", MEDIA);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        self.answer("PUT", path, req.send(body.to_string().as_bytes()))
    }

    /// `POST path` with a JSON body: status and JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let mut req =
            self.agent.post(format!("{}{path}", self.base)).header("Content-Type", MEDIA).header("Accept", MEDIA);
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        self.answer("POST", path, req.send(body.to_string().as_bytes()))
    }

    fn answer(
        &self,
        method: &str,
        path: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<(u16, Value)> {
        let mut resp = result
            .with_context(|| format!("{method} {}{path}: the registry did not answer; check the URL", self.base))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if status == 401 || status == 403 {
            bail!(
                "{method} {}{path}: {status} {}; give credentials with --credentials <file> (`user:password` or `Bearer <token>`)",
                self.base,
                text.trim()
            );
        }
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// Every `waybill.*` subject with its versions, oldest first.
    pub fn deployed(&self) -> anyhow::Result<Deployed> {
        let (status, subjects) = self.get("/subjects")?;
        let Some(subjects) = subjects.as_array().filter(|_| status == 200) else {
            bail!("GET {}/subjects answered {status} {subjects}; is this a Confluent-compatible registry?", self.base);
        };
        let mut deployed = Deployed { catalog: false, ..Deployed::default() };
        for subject in subjects.iter().filter_map(Value::as_str).filter(|s| s.starts_with("waybill.")) {
            let (_, versions) = self.get(&format!("/subjects/{subject}/versions"))?;
            let mut list = Vec::new();
            for v in versions.as_array().into_iter().flatten().filter_map(Value::as_u64) {
                let (status, body) = self.get(&format!("/subjects/{subject}/versions/{v}"))?;
                let (Some(id), Some(text)) = (body["id"].as_u64(), body["schema"].as_str()) else {
                    bail!("GET /subjects/{subject}/versions/{v} answered {status} {body}, not a schema");
                };
                let schema = apache_avro::Schema::parse_str(text)
                    .with_context(|| format!("{subject} v{v} (id {id}) in the registry does not parse as Avro"))?;
                list.push(DeployedVersion { version: v as u32, id: id as u32, schema });
            }
            deployed.subjects.insert(subject.to_string(), list);
        }
        Ok(deployed)
    }
}

/// The schemas of a `schemas/` folder (or a repository checkout holding one), as listed
/// in its `ids.txt`.
pub fn deployed_from_dir(dir: &Path) -> anyhow::Result<Deployed> {
    let dir: PathBuf = if dir.join("ids.txt").is_file() { dir.to_path_buf() } else { dir.join("schemas") };
    let ids = dir.join("ids.txt");
    let text = std::fs::read_to_string(&ids).with_context(|| {
        format!(
            "reading {}: --against takes the schemas/ folder of the deployed release (e.g. `git worktree add /tmp/last <release tag>` and /tmp/last/schemas) or a registry URL",
            ids.display()
        )
    })?;
    let mut deployed = Deployed { catalog: true, ..Deployed::default() };
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let (Some(id), Some(name), Some(version)) = (
            parts.first().and_then(|i| i.parse::<u32>().ok()),
            parts.get(1),
            parts.get(2).and_then(|v| v.strip_prefix('v')).and_then(|v| v.parse::<u32>().ok()),
        ) else {
            bail!("{}: {line:?} is not `<id> <namespace>.<Name> v<N>`", ids.display());
        };
        let (ns, short) = name.rsplit_once('.').unwrap_or(("", name));
        let file = dir.join(ns).join(short).join(format!("v{version}.avsc"));
        let json = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let schema = apache_avro::Schema::parse_str(&json)
            .with_context(|| format!("{} does not parse as Avro", file.display()))?;
        deployed.subjects.entry(name.to_string()).or_default().push(DeployedVersion { version, id, schema });
    }
    for v in deployed.subjects.values_mut() {
        v.sort_by_key(|d| d.version);
    }
    Ok(deployed)
}

/// `waybill schemas check --against <URL | folder>`: the report of what deploying this
/// build changes.
pub fn check(against: &str, credentials: Option<&Path>) -> anyhow::Result<Report> {
    let deployed = if against.starts_with("http://") || against.starts_with("https://") {
        RegistryClient::new(against, credentials)?.deployed()?
    } else {
        deployed_from_dir(Path::new(against))?
    };
    Ok(waybill_schema::release::compare(Registry::embedded(), Levels::embedded(), &changelog::embedded(), &deployed))
}

/// What `waybill schemas push` did: every catalog schema with the id the registry gave it.
#[derive(Debug, Clone, Default)]
pub struct Pushed {
    /// `(subject, version, catalog id, registry id)`, in catalog order.
    pub ids: Vec<(String, u32, u32, u32)>,
    /// Subjects whose compatibility level was set.
    pub levels_set: usize,
}

impl std::fmt::Display for Pushed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{:<48} {:>7} {:>10} {:>11}", "subject", "version", "catalog id", "registry id")?;
        for (s, v, c, r) in &self.ids {
            writeln!(f, "{s:<48} {v:>7} {c:>10} {r:>11}")?;
        }
        writeln!(
            f,
            "{} schema versions registered, {} subject levels set; start Waybill with [registry] url to use these ids",
            self.ids.len(),
            self.levels_set
        )
    }
}

/// `waybill schemas push --registry URL`: checks the catalog against what the registry
/// holds (refusing, naming the subject, when it is incompatible), sets each subject's
/// compatibility level and registers every version in order. Registering a schema a
/// registry already has answers its existing id, so pushing twice changes nothing.
pub fn push(url: &str, credentials: Option<&Path>) -> anyhow::Result<Pushed> {
    let client = RegistryClient::new(url, credentials)?;
    let registry = Registry::embedded();
    let levels = Levels::embedded();
    let report = waybill_schema::release::compare(registry, levels, &changelog::embedded(), &client.deployed()?);
    if report.breaks() {
        bail!(
            "the registry at {url} holds schemas this catalog is incompatible with; nothing was registered:\n{report}"
        );
    }
    let mut pushed = Pushed::default();
    for subject in registry.full_names() {
        let level = levels.of(subject);
        let (status, body) = client.put(&format!("/config/{subject}"), &json!({ "compatibility": level.as_str() }))?;
        if status == 200 {
            pushed.levels_set += 1;
        } else {
            tracing::warn!(subject, level = level.as_str(), status, body = %body, "the registry did not take the subject's compatibility level");
        }
        for s in registry.versions(subject) {
            let (status, body) = client.post(&format!("/subjects/{subject}/versions"), &schema_body(s.json()))?;
            let Some(id) = body["id"].as_u64().filter(|_| status == 200) else {
                bail!(
                    "registering {subject} v{} (catalog id {}) at {url} answered {status} {body}; {}",
                    s.version(),
                    s.id(),
                    if status == 409 {
                        "the registry finds it incompatible with what it holds; run `waybill schemas check --against` for the details"
                    } else {
                        "fix the cause and push again (what is registered stays)"
                    }
                );
            };
            pushed.ids.push((subject.to_string(), s.version(), s.id(), id as u32));
        }
    }
    Ok(pushed)
}

/// The cache of the registry's ids in the data directory.
fn ids_cache(data_dir: &Path) -> PathBuf {
    data_dir.join("registry-ids.json")
}

/// With `[registry] url`, maps every catalog schema to the id the company registry gave
/// it and installs the map for this process (records are then written and read with
/// those ids). Refuses, naming the subject, when a schema is not registered or the
/// registry holds a version this build cannot read. When the registry cannot be reached,
/// the ids cached by the last start are used. Does nothing without `url`, or when the
/// map is installed already.
pub fn use_external_registry(cfg: &crate::config::Config) -> anyhow::Result<()> {
    let Some(url) = &cfg.registry.url else { return Ok(()) };
    if waybill_schema::external::installed().is_some() {
        return Ok(());
    }
    let client = RegistryClient::new(url, cfg.registry.credentials_file.as_deref())?;
    let cache = ids_cache(&cfg.data_dir);
    let map = match lookup_all(&client, url) {
        Ok(map) => {
            std::fs::create_dir_all(&cfg.data_dir)?;
            let pairs: Vec<(u32, u32)> = map.iter().map(|(c, r)| (*c, *r)).collect();
            std::fs::write(&cache, serde_json::to_vec(&pairs)?)
                .with_context(|| format!("writing the registry id cache {}", cache.display()))?;
            map
        }
        Err(LookupError::Unreachable(e)) if cache.is_file() => {
            tracing::warn!(url = %url, error = %format!("{e:#}"), cache = %cache.display(), "the schema registry is unreachable; using the ids cached at the last start");
            let pairs: Vec<(u32, u32)> = serde_json::from_slice(&std::fs::read(&cache)?)
                .with_context(|| format!("{} is not a registry id cache; delete it", cache.display()))?;
            pairs.into_iter().collect()
        }
        Err(LookupError::Unreachable(e) | LookupError::Refused(e)) => return Err(e),
    };
    let resolver_client = RegistryClient::new(url, cfg.registry.credentials_file.as_deref())?;
    let resolver: waybill_schema::external::Resolver = Box::new(move |id| {
        let (status, body) = resolver_client.get(&format!("/schemas/ids/{id}")).ok()?;
        (status == 200).then(|| body["schema"].as_str().map(str::to_string)).flatten()
    });
    tracing::info!(url = %url, schemas = map.len(), "using the schema registry's ids");
    waybill_schema::external::install(map, Some(resolver)).map_err(anyhow::Error::msg)
}

/// Why the registry's ids could not be looked up: it could not be reached (a cached map
/// may stand in), or it answered and the answer forbids starting.
enum LookupError {
    Unreachable(anyhow::Error),
    Refused(anyhow::Error),
}

fn lookup_all(client: &RegistryClient, url: &str) -> Result<std::collections::HashMap<u32, u32>, LookupError> {
    let deployed = client.deployed().map_err(LookupError::Unreachable)?;
    let report =
        waybill_schema::release::compare(Registry::embedded(), Levels::embedded(), &changelog::embedded(), &deployed);
    if report.breaks() {
        return Err(LookupError::Refused(anyhow::anyhow!(
            "the schema registry at {url} holds versions this build cannot read; refusing to start:\n{report}"
        )));
    }
    let mut map = std::collections::HashMap::new();
    for s in Registry::embedded().iter() {
        let subject = s.full_name();
        let (status, body) =
            client.post(&format!("/subjects/{subject}"), &schema_body(s.json())).map_err(LookupError::Unreachable)?;
        match body["id"].as_u64() {
            Some(id) if status == 200 => {
                map.insert(s.id(), id as u32);
            }
            _ => {
                return Err(LookupError::Refused(anyhow::anyhow!(
                    "subject {subject} version {} (catalog id {}) is not in the schema registry at {url} ({status} {body}); register the catalog with `waybill schemas push --registry {url}` before starting",
                    s.version(),
                    s.id()
                )));
            }
        }
    }
    Ok(map)
}

/// Standard base64 (the basic-auth header, bytes in JSON output).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The body Confluent's API takes for a schema.
pub fn schema_body(json: &str) -> Value {
    json!({ "schema": waybill_schema::confluent::compact(json) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_is_base64() {
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"a"), "YQ==");
    }

    #[test]
    fn a_folder_like_this_builds_schemas_changes_nothing() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let report = check(dir.to_str().unwrap(), None).unwrap();
        assert!(report.changes.is_empty(), "{report}");
    }
}
