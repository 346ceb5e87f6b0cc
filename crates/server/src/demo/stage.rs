//! The connector demo's stage: the doubles of Odoo, the warehouse, the carrier and
//! finance on loopback, their secrets in files, and the node configuration that points
//! Waybill's connectors at them and lets each system post to ingestion with its own
//! token.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use waybill_connect::client::Timeouts;
use waybill_connect::odoo::{Odoo, Protocol};
use waybill_connect::secret::SecretFile;
use waybill_domain::{System, topic};
use waybill_doubles::odoo::OdooDouble;
use waybill_log::EventLog;

use super::answers::World;
use super::bank::Bank;
use super::channel::{self, Channel, ChannelConfig, MasterData, Seen};
use super::systems::{Pace, Scheduler, Systems};
use crate::config::Config;
use crate::connectors::ConnectorSettings;

/// Identities in the demo's tokens file, one per system that posts to ingestion.
const IDENTITIES: [(System, &str); 5] = [
    (System::Odoo, "odoo-webhook"),
    (System::Wms, "wms"),
    (System::Carrier, "carrier"),
    (System::Finance, "finance"),
    (System::Bank, "bank-importer"),
];

/// The secrets of the doubles: a private directory holding the producers' tokens file
/// (one identity per system that posts to ingestion, and optionally a viewer for the
/// control plane) and each signed HTTP system's HMAC secret. Removed when dropped.
pub struct Secrets {
    dir: tempfile::TempDir,
    tokens: HashMap<System, String>,
    hmac: HashMap<System, String>,
    viewer: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

impl Secrets {
    /// New random tokens for [`IDENTITIES`], HMAC secrets for the `signed` systems, and a
    /// viewer's token for the control plane under `viewer`, written to a new directory.
    pub fn generate(signed: &[System], viewer: Option<&str>) -> anyhow::Result<Secrets> {
        let dir = tempfile::Builder::new().prefix("waybill-demo-secrets-").tempdir()?;
        let mut rng = fastrand::Rng::new();
        let mut tokens = HashMap::new();
        let mut hmac = HashMap::new();
        let mut file = String::from("# The demo's producers: each system posts to ingestion as itself.\n");
        for (system, identity) in IDENTITIES {
            let token = secret(&mut rng);
            file.push_str(&format!(
                "[[tokens]]\ntoken = {token:?}\nidentity = {identity:?}\nsystem = {:?}\n\n",
                system.as_str()
            ));
            tokens.insert(system, token);
        }
        let viewer = viewer.map(|identity| {
            let token = secret(&mut rng);
            file.push_str(&format!("[[tokens]]\ntoken = {token:?}\nidentity = {identity:?}\nrole = \"viewer\"\n\n"));
            token
        });
        for system in signed {
            let key = secret(&mut rng);
            write_secret(&dir.path().join(format!("{system}-hmac")), &key)?;
            hmac.insert(*system, key);
        }
        write_secret(&dir.path().join("tokens.toml"), &file)?;
        Ok(Secrets { dir, tokens, hmac, viewer })
    }

    /// A file in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The bearer token `system` posts to ingestion with.
    pub fn token(&self, system: System) -> &str {
        &self.tokens[&system]
    }

    /// Every system's ingestion token.
    pub fn tokens(&self) -> &HashMap<System, String> {
        &self.tokens
    }

    /// The HMAC secrets of the signed systems.
    pub fn hmac(&self) -> &HashMap<System, String> {
        &self.hmac
    }

    /// The viewer's control-plane token, if one was made.
    pub fn viewer(&self) -> Option<&str> {
        self.viewer.as_deref()
    }

    /// `[connectors.<system>]` for the signed HTTP double of `system` at `url`.
    pub fn http_connector(&self, system: System, url: String) -> ConnectorSettings {
        ConnectorSettings {
            kind: "http".into(),
            system: system.as_str().into(),
            url,
            hmac_secret_file: Some(self.path(&format!("{system}-hmac"))),
            rate: 1000.0,
            burst: 200,
            concurrency: 8,
            timeout_ms: 10_000,
            ..ConnectorSettings::default()
        }
    }

    /// The tokens file for the control plane and ingestion, and ingestion for
    /// authenticated callers only, with room for a busy run.
    pub fn configure_ingestion(&self, cfg: &mut Config) {
        cfg.control.tokens_file = Some(self.path("tokens.toml"));
        cfg.ingest.allow_anonymous = false;
        cfg.ingest.rate_per_sec = 5_000.0;
        cfg.ingest.burst = 5_000;
    }
}

/// The doubles and their secrets.
pub struct Stage {
    /// Odoo (JSON-RPC 17.0).
    pub odoo: OdooDouble,
    /// The warehouse, carrier and finance.
    pub systems: Systems,
    master: MasterData,
    secrets: Secrets,
}

impl std::fmt::Debug for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stage").field("odoo", &self.odoo.url()).finish_non_exhaustive()
    }
}

/// A random secret of 32 letters and digits.
fn secret(rng: &mut fastrand::Rng) -> String {
    (0..32).map(|_| rng.alphanumeric()).collect()
}

/// Writes `text` to `path`, readable by its owner only.
pub(super) fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f =
        options.open(path).map_err(|e| anyhow::anyhow!("cannot write the demo's secret {}: {e}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

impl Stage {
    /// Starts the doubles for `orders` orders of `world`.
    pub fn start(world: Arc<World>, orders: usize) -> anyhow::Result<Stage> {
        let secrets = Secrets::generate(&[System::Wms, System::Carrier, System::Finance], None)?;
        let (odoo, master) = channel::start_odoo(orders, world.seed, &world.mix)?;
        let key = odoo.api_key("admin").expect("the double has its admin");
        write_secret(&secrets.path("odoo-key"), &key)?;
        let systems = Systems::start(world, secrets.hmac(), Pace::WORLD)?;
        Ok(Stage { odoo, systems, master, secrets })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.secrets.path(name)
    }

    /// Points `cfg` at the doubles: `[connectors.odoo|wms|carrier|finance]`, the tokens
    /// file, and ingestion for authenticated callers only.
    pub fn configure(&self, cfg: &mut Config) {
        cfg.connectors.insert(
            "odoo".into(),
            ConnectorSettings {
                kind: "odoo".into(),
                url: self.odoo.url(),
                version: "17.0".into(),
                database: self.odoo.db().to_string(),
                login: "admin".into(),
                credentials_file: Some(self.path("odoo-key")),
                // The double on loopback takes far more than a production Odoo, which gets
                // 10–20 calls/s (the connector's default is 20): a delivery is several calls
                // (search, read, write, validate), so 1,000 orders make about 12,000.
                rate: 1000.0,
                burst: 200,
                concurrency: 4,
                timeout_ms: 10_000,
                poll_interval_ms: 200,
                ..ConnectorSettings::default()
            },
        );
        for (system, target) in self.systems.targets() {
            let mut c = self.secrets.http_connector(system, target.command_url());
            if system == System::Wms {
                c.stock_url = format!("{}{}", target.url(), super::systems::STOCK_PATH);
            }
            cfg.connectors.insert(system.as_str().into(), c);
        }
        // Stock reconciliation reads the warehouse through its connector; the demo runs it
        // when the warehouse is quiet (before the first order and after the last).
        cfg.reconcile.connector = System::Wms.as_str().into();
        cfg.reconcile.settle_ms = 300;
        self.secrets.configure_ingestion(cfg);
    }

    /// The sales channel, creating orders in Odoo over JSON-RPC.
    pub fn channel(&self, cfg: ChannelConfig, log: Arc<dyn EventLog>, seen: Seen) -> anyhow::Result<Channel> {
        let key = Arc::new(SecretFile::open(self.path("odoo-key"))?);
        let client = Odoo::new(
            &self.odoo.url(),
            self.odoo.db(),
            Protocol::JsonRpc { login: "admin".into() },
            key,
            Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(30) },
        );
        let bank = Bank::new(self.systems.posted.clone(), self.systems.later.clone());
        Ok(Channel::new(client, self.master.clone(), cfg, log, seen, self.systems.later.clone(), bank))
    }

    /// Starts posting the systems' later answers to ingestion at `addr`.
    pub fn start_posting(&self, addr: std::net::SocketAddr) -> anyhow::Result<Vec<JoinHandle<()>>> {
        self.systems.later.start(format!("http://{addr}/v1/events"), self.secrets.tokens().clone())
    }

    /// The warehouse's stock.
    pub fn stock(&self) -> &super::stock::WarehouseStock {
        &self.systems.stock
    }

    /// The scheduler of later answers.
    pub fn later(&self) -> &Arc<Scheduler> {
        &self.systems.later
    }

    /// The doubles' addresses, one line each.
    pub fn describe(&self) -> Vec<String> {
        vec![
            format!("odoo (JSON-RPC 17.0, db {:?})  {}", self.odoo.db(), self.odoo.url()),
            format!(
                "warehouse (HTTP, signed)        {}  stock {}{}",
                self.systems.wms.command_url(),
                self.systems.wms.url(),
                super::systems::STOCK_PATH
            ),
            format!("carrier (HTTP, signed)          {}", self.systems.carrier.command_url()),
            format!("finance (HTTP, signed)          {}", self.systems.finance.command_url()),
        ]
    }
}

/// Commands not yet delivered by the demo's connectors: the command topics' ends minus
/// each connector's stored position (its group is `connector-<name>`,
/// `waybill_connect::ConnectorConfig::group`).
pub fn undelivered(log: &dyn EventLog) -> u64 {
    let mut n = 0;
    for system in topic::COMMAND_TARGETS {
        let t = topic::commands(system);
        let group = format!("connector-{system}");
        for p in 0..log.partitions(&t).unwrap_or(0) as i32 {
            let end = log.end_offset(&t, p).unwrap_or(0);
            let at = log.committed(&group, &t, p).ok().flatten().unwrap_or(0);
            n += (end - at).max(0) as u64;
        }
    }
    n
}
