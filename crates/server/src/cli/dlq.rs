//! `waybill dlq list|replay`: the dead-letter topic, through a running server's control
//! plane (`--server`: operator, audited) or straight from the log of a stopped one; both
//! print the same table or JSON.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use figment::Figment;
use waybill_control::proto;
use waybill_server::{dlq, node};

use super::render::{Output, emit};
use super::{Common, Remote, call, init_telemetry};

/// A running server's control plane for `dlq` (without `--server`, `dlq` reads the log).
#[derive(Debug, Clone, Args)]
pub(crate) struct DlqRemote {
    /// Control plane URL of a running server, e.g. `http://127.0.0.1:8421`.
    #[arg(long)]
    pub(crate) server: Option<String>,
    /// Bearer token (an operator's).
    #[arg(long, env = "WAYBILL_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate, for https.
    #[arg(long)]
    pub(crate) ca_cert: Option<PathBuf>,
}

impl DlqRemote {
    /// The control-plane options, when `--server` was given.
    fn remote(&self, output: Output) -> Option<Remote> {
        Some(Remote {
            server: self.server.clone()?,
            token: self.token.clone(),
            ca_cert: self.ca_cert.clone(),
            client_cert: None,
            client_key: None,
            output,
        })
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum DlqCommand {
    /// List dead letters with their reasons: from a running server's control plane with
    /// `--server` (operator, audited), else from the log in the data directory (the
    /// server stopped).
    List {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        remote: DlqRemote,
        /// Only records whose reason contains this text.
        #[arg(long)]
        matching: Option<String>,
        /// `table` or `json` (every header, the key, and the bytes in base64).
        #[arg(long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Append dead letters back to the topic they came from (after a fix): through a
    /// running server's control plane with `--server` (operator, audited), else
    /// directly to the log in the data directory (the server stopped).
    Replay {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        remote: DlqRemote,
        /// Only records whose reason contains this text.
        #[arg(long)]
        matching: Option<String>,
        /// Why (recorded in the audit; with `--server`).
        #[arg(long, default_value = "")]
        note: String,
    },
}

/// One dead letter as the listing shows it, from the log or from the control plane.
struct Row {
    partition: i32,
    offset: i64,
    kind: String,
    reason: String,
    source_topic: String,
    caller: String,
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp_ms: i64,
}

impl Row {
    fn json(&self) -> serde_json::Value {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        serde_json::json!({
            "partition": self.partition,
            "offset": self.offset,
            "kind": self.kind,
            "reason": self.reason,
            "source_topic": self.source_topic,
            "caller": (!self.caller.is_empty()).then_some(&self.caller),
            "key": text(&self.key),
            "headers": self.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(text(v)))).collect::<serde_json::Map<_, _>>(),
            "value_base64": waybill_server::schemas::base64(&self.value),
            "timestamp_ms": self.timestamp_ms,
        })
    }

    fn cells(&self) -> Vec<String> {
        let from = if self.caller.is_empty() {
            self.source_topic.clone()
        } else {
            format!("{} ({})", self.source_topic, self.caller)
        };
        vec![format!("{}@{}", self.partition, self.offset), self.kind.clone(), from, self.reason.clone()]
    }
}

fn print(rows: &[Row], total: u64, output: Output) -> anyhow::Result<()> {
    let json: Vec<serde_json::Value> = rows.iter().map(Row::json).collect();
    let cells: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
    let shown = if total as usize > rows.len() { format!(" ({} shown)", rows.len()) } else { String::new() };
    emit(output, &json, &["POSITION", "KIND", "FROM", "REASON"], &cells, &format!("{total} dead letters{shown}"))
}

pub(crate) fn run(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List { remote, matching, output, .. } if remote.server.is_some() => {
            let remote = remote.remote(output).expect("--server given");
            let req = proto::ListDeadLettersRequest { matching: matching.unwrap_or_default(), limit: 0 };
            let r = call(&remote, async move |mut c| Ok(c.workbench.list_dead_letters(req).await?.into_inner()))?;
            let rows: Vec<Row> = r
                .dead_letters
                .into_iter()
                .map(|d| Row {
                    partition: d.partition,
                    offset: d.offset,
                    kind: d.kind,
                    reason: d.reason,
                    source_topic: d.source_topic,
                    caller: d.caller,
                    key: d.key,
                    value: d.value,
                    headers: d.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                    timestamp_ms: d.timestamp_ms,
                })
                .collect();
            print(&rows, r.total, output)
        }
        DlqCommand::Replay { remote, matching, note, .. } if remote.server.is_some() => {
            let remote = remote.remote(Output::Table).expect("--server given");
            let req = proto::ReplayDeadLettersRequest { matching: matching.unwrap_or_default(), note };
            let r = call(&remote, async move |mut c| Ok(c.workbench.replay_dead_letters(req).await?.into_inner()))?;
            println!("replayed {} dead letters to their original topics", r.replayed);
            Ok(())
        }
        DlqCommand::List { common, output, matching, .. } => {
            let cfg = common.load(Figment::new())?;
            let _telemetry = init_telemetry(&cfg)?;
            let log = node::open_log(&cfg)?;
            let rows: Vec<Row> = dlq::list(log.as_ref())?
                .into_iter()
                .filter(|d| matching.as_deref().is_none_or(|m| d.reason.contains(m)))
                .map(|d| Row {
                    partition: d.partition,
                    offset: d.offset,
                    kind: d.kind,
                    reason: d.reason,
                    source_topic: d.source_topic,
                    caller: d.caller.unwrap_or_default(),
                    key: d.record.key.clone(),
                    value: d.record.value.clone(),
                    headers: d.record.headers.iter().map(|h| (h.key.clone(), h.value.clone())).collect(),
                    timestamp_ms: d.record.timestamp_ms,
                })
                .collect();
            let total = rows.len() as u64;
            print(&rows, total, output)
        }
        DlqCommand::Replay { common, matching, .. } => {
            let cfg = common.load(Figment::new())?;
            let _telemetry = init_telemetry(&cfg)?;
            let log = node::open_log(&cfg)?;
            let n = dlq::replay(log.as_ref(), matching.as_deref())?;
            println!("replayed {n} dead letters to their original topics");
            Ok(())
        }
    }
}
