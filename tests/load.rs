//! `waybill load` end to end: the binary starts `waybill serve` as its child, posts 40
//! orders through authenticated ingestion with 4 closed-loop clients, follows each on the
//! `WatchOrder` stream while the connectors deliver to the doubles, and prints its table.
//! Every order must complete, with CPU per order reported for both processes.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn closed_loop_run_completes_every_order_and_prints_the_table() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_waybill"))
        .args(["load", "--concurrency", "4", "--orders", "40", "--order-timeout", "30", "--duration", "60", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "waybill load failed:\n{stdout}\n{stderr}");
    let row = |name: &str| -> String {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap_or_else(|| panic!("no {name:?} row in:\n{stdout}"))
            .to_string()
    };
    assert!(row("mode").contains("closed loop, 4 clients"), "{stdout}");
    assert!(row("orders completed").contains("40 of 40"), "{stdout}");
    assert!(row("errors").ends_with("none"), "{stdout}");
    assert!(row("latency").contains("p99"), "{stdout}");
    let cpu: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("cpu")).collect();
    assert_eq!(cpu.len(), 2, "CPU of the child and of the generator:\n{stdout}");
    assert!(cpu.iter().any(|l| l.contains("waybill serve (child")), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

#[test]
fn json_output_and_refusing_a_remote_broker() {
    let out = Command::new(env!("CARGO_BIN_EXE_waybill"))
        .args(["load", "--kafka", "kafka.example.com:9092", "--orders", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not on loopback") && stderr.contains("--allow-remote"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_waybill"))
        .args(["load", "--rate", "20", "--scenario", "month-end", "--orders", "10", "--output", "json", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["completed"], 10, "{v}");
    assert_eq!(v["mode"], "open loop, 20 orders/s, month-end", "{v}");
    assert!(v["latency"]["p50_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(v["cpu"].as_array().unwrap().len(), 2, "{v}");
}
