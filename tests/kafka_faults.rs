//! The whole orchestrator (the demo with `--in-process`: coordinator, projections,
//! simulated systems) on librdkafka's mock cluster, which listens on real loopback ports:
//! the broker goes away for 20 seconds in the middle of the run, and with
//! `kafka.transactions` on every coordinator batch is a Kafka transaction. Either way
//! every order must reach its end.
//!
//! The mock has no CreateTopics, so the planned topics are made on it first.

use std::time::Duration;

use clap::Parser;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use waybill_server::backend;
use waybill_server::config::Config;
use waybill_server::demo::{self, DemoOptions, Summary};

type Mock = MockCluster<'static, DefaultProducerContext>;

const PARTITIONS: u32 = 4;

fn mock() -> Mock {
    let mock = MockCluster::new(1).expect("mock cluster");
    for t in backend::plan(&Config { partitions: PARTITIONS, ..Config::default() }) {
        mock.create_topic(&t.name, t.partitions as i32, 1).expect("mock topic");
    }
    mock
}

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    demo: DemoOptions,
}

fn options(mock: &Mock, orders: usize, properties: &[&str]) -> DemoOptions {
    // The systems in process: this tests the orchestrator on a failing broker.
    let mut argv: Vec<String> = [
        "demo",
        "--in-process",
        "--quiet",
        "--listen",
        "",
        "--control-listen",
        "",
        "--metrics-listen",
        "",
        "--registry-listen",
        "",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend([
        "--orders".into(),
        orders.to_string(),
        "--rate".into(),
        "40".into(),
        "--timeout".into(),
        "240".into(),
    ]);
    argv.extend(["--pick-timeout".into(), "30".into(), "--partitions".into(), PARTITIONS.to_string()]);
    argv.extend(["--kafka".into(), mock.bootstrap_servers()]);
    for p in ["consumer.session.timeout.ms=6000", "consumer.heartbeat.interval.ms=500", "request_timeout_ms=10000"]
        .iter()
        .chain(properties)
    {
        argv.extend(["--kafka-property".into(), p.to_string()]);
    }
    Args::parse_from(argv).demo
}

fn assert_every_order_ended(summary: &Summary, orders: usize) {
    assert!(summary.finished, "the demo did not finish:\n{summary}");
    assert_eq!(summary.by_status.values().sum::<u64>(), orders as u64, "{summary}");
    assert!(summary.invoices_posted > 0, "{summary}");
}

/// The broker is down for 20 s mid-run: processing pauses (workers and the simulated
/// systems retry), nothing is lost, and it resumes by itself.
#[test]
fn a_20_second_broker_outage_pauses_processing_and_loses_nothing() {
    let mock = mock();
    let orders = 120;
    let opts = options(&mock, orders, &[]);
    let run = std::thread::spawn(move || demo::run(&opts));
    std::thread::sleep(Duration::from_secs(2));
    mock.broker_down(1).unwrap();
    std::thread::sleep(Duration::from_secs(20));
    mock.broker_up(1).unwrap();
    let summary = run.join().unwrap().expect("the demo survives the outage");
    assert_every_order_ended(&summary, orders);
}

/// `kafka.transactions = true`: the start-up check passes on the mock (it runs the
/// transaction APIs) and every coordinator batch commits as a transaction.
#[test]
fn with_transactions_every_order_reaches_its_end() {
    let mock = mock();
    let orders = 60;
    let opts = options(&mock, orders, &["transactions=true"]);
    let summary = demo::run(&opts).expect("the demo runs with transactions");
    assert_every_order_ended(&summary, orders);
}
