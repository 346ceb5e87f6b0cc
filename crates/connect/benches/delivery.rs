//! Connector delivery rate: commands read from the embedded log, posted through the HTTP
//! adapter (JSON body, HMAC signature, `Idempotency-Key`) to a no-op HTTP server, the
//! outcome position appended — against the baseline of raw `POST`s of the same bodies to
//! the same server over the same kind of client, measured in the same round.
//!
//! `cargo bench -p waybill-connect --bench delivery` prints a markdown table (medians of
//! `WAYBILL_BENCH_ROUNDS` rounds, default 5; `WAYBILL_BENCH_COMMANDS` commands per round,
//! default 4000). Unthrottled (`rate = 0`), concurrency 4, like a connector to a fast
//! WMS.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use waybill_connect::backoff::Backoff;
use waybill_connect::client::{Client, Timeouts};
use waybill_connect::http::{Format, HttpAdapter};
use waybill_connect::secret::SecretFile;
use waybill_connect::target::Limits;
use waybill_connect::{Connector, ConnectorConfig};
use waybill_domain::command::StockRequest;
use waybill_domain::event::OrderLine;
use waybill_domain::{Command, CommandBody, CommandMeta, Money, Qty, System, Timestamp, topic};
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions, FsyncPolicy};
use waybill_log::{AppendBatch, EventLog, Record};

const CONCURRENCY: usize = 4;

/// An HTTP/1.1 server that reads each request and answers `202` with no body.
fn noop_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            std::thread::spawn(move || {
                let _ = stream.set_nodelay(true);
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if out.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}/v1/commands")
}

fn command(i: usize) -> Command {
    let order = format!("SO{i:06}");
    Command {
        meta: CommandMeta {
            idempotency_key: format!("reserve:{order}"),
            saga_id: format!("o2f:{order}"),
            correlation_key: order.clone(),
            target: System::Wms,
            caused_by: format!("odoo:release:{order}"),
            issued_at: Timestamp(1_796_118_278_000_000),
        },
        body: CommandBody::ReserveStock(StockRequest {
            order_ref: order,
            warehouse: "WH-MAIN".into(),
            lines: (0..3)
                .map(|k| OrderLine {
                    line_no: (k + 1) * 10,
                    sku: format!("SKU-{k:03}"),
                    uom: "Units".into(),
                    quantity: Qty::units(4),
                    unit_price: Money(1999),
                    tax_code: Some("VAT20".into()),
                    requested_date: Timestamp(1_796_118_278_000_000),
                    warehouse: "WH-MAIN".into(),
                })
                .collect(),
        }),
    }
}

/// Raw POSTs of the same JSON bodies, `CONCURRENCY` clients in parallel; posts/s.
fn baseline(url: &str, bodies: &[Vec<u8>]) -> f64 {
    let client = Client::new("bench", Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(10) });
    let started = Instant::now();
    std::thread::scope(|s| {
        for w in 0..CONCURRENCY {
            let client = client.clone();
            s.spawn(move || {
                for (i, b) in bodies.iter().enumerate().filter(|(i, _)| i % CONCURRENCY == w) {
                    let key = format!("k{i}");
                    let a = client
                        .post(url, "/v1/commands", &[("Idempotency-Key", key)], "application/json", b, None)
                        .unwrap();
                    assert_eq!(a.status, 202);
                }
            });
        }
    });
    bodies.len() as f64 / started.elapsed().as_secs_f64()
}

/// The connector runtime from a pre-loaded command topic until every position is stored.
fn connector(url: &str, commands: &[Command]) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let log = EmbeddedLog::open(
        &dir.path().join("log"),
        EmbeddedOptions { fsync: FsyncPolicy::EveryBatch, ..EmbeddedOptions::default() },
    )
    .unwrap();
    let log: Arc<dyn EventLog> = Arc::new(log);
    let t = topic::commands(System::Wms);
    log.ensure_topic(&t, 4).unwrap();
    log.ensure_topic(&topic::inbound(System::Wms), 4).unwrap();
    log.ensure_topic(topic::DLQ, 4).unwrap();
    for chunk in commands.chunks(500) {
        let records = chunk
            .iter()
            .map(|c| {
                Record::keyed(
                    t.clone(),
                    c.meta.correlation_key.as_bytes().to_vec(),
                    waybill_schema::encode_command(c).unwrap(),
                )
            })
            .collect();
        log.append(AppendBatch { records, positions: Vec::new() }).unwrap();
    }
    std::fs::write(dir.path().join("hmac"), "bench-secret").unwrap();
    let adapter = HttpAdapter::new(
        System::Wms,
        url,
        Format::Json,
        Timeouts { connect: Duration::from_secs(2), call: Duration::from_secs(10) },
        Some(Arc::new(SecretFile::open(dir.path().join("hmac")).unwrap())),
        None,
    );
    let cfg = ConnectorConfig {
        name: "wms".into(),
        system: System::Wms,
        concurrency: CONCURRENCY,
        limits: Limits {
            rate: 0.0,
            burst: 1,
            breaker_threshold: 5,
            breaker_cool_down: Duration::from_secs(1),
            unavailable_after: Duration::from_secs(60),
        },
        max_attempts: 3,
        backoff: Backoff { base: Duration::from_millis(50), max: Duration::from_secs(1) },
        bulk: Vec::new(),
        readahead: 1024,
    };
    let ends: Vec<i64> = (0..4).map(|p| log.end_offset(&t, p).unwrap()).collect();
    let started = Instant::now();
    let running = Connector::new(cfg, log.clone(), Arc::new(adapter)).start().unwrap();
    running.assign(&[0, 1, 2, 3]);
    loop {
        let done = (0..4).all(|p| log.committed("connector-wms", &t, p).unwrap().unwrap_or(0) >= ends[p as usize]);
        if done {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let rate = commands.len() as f64 / started.elapsed().as_secs_f64();
    running.stop();
    rate
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let rounds = env("WAYBILL_BENCH_ROUNDS", 5);
    let n = env("WAYBILL_BENCH_COMMANDS", 4000);
    let url = noop_server();
    let commands: Vec<Command> = (0..n).map(command).collect();
    let bodies: Vec<Vec<u8>> = commands.iter().map(waybill_schema::encode_command_json).collect();
    let (mut base, mut conn, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which side goes first.
        let (b, c) = if round % 2 == 0 {
            let b = baseline(&url, &bodies);
            (b, connector(&url, &commands))
        } else {
            let c = connector(&url, &commands);
            (baseline(&url, &bodies), c)
        };
        eprintln!("round {}: raw POST {b:.0}/s, connector {c:.0}/s, ratio {:.2}", round + 1, c / b);
        base.push(b);
        conn.push(c);
        ratio.push(c / b);
    }
    println!("| row | figure | baseline | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| connector delivery (HTTP adapter, concurrency {CONCURRENCY}, fsync per batch) | {:.0} commands/s | {:.0} raw POSTs/s to the same no-op server | {:.2} |",
        median(conn),
        median(base),
        median(ratio)
    );
}
