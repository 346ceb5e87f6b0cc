//! A Tansu broker (Kafka protocol, in memory) on a free loopback port for one test,
//! stopped on drop. The binary comes from `WAYBILL_TANSU_BIN` (default
//! `~/.cache/waybill/tansu/bin/tansu`, which `scripts/broker.sh install` builds, and
//! `make test` runs first). A test that needs it fails, never skips, without it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Broker {
    child: Child,
    pub addr: String,
}

impl Broker {
    pub fn start() -> Broker {
        let bin = std::env::var_os("WAYBILL_TANSU_BIN").map(PathBuf::from).unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/waybill/tansu/bin/tansu")
        });
        assert!(
            bin.exists(),
            "this Kafka test needs the Tansu broker at {} (WAYBILL_TANSU_BIN); build it with scripts/broker.sh install",
            bin.display()
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url"])
            .arg(format!("tcp://{addr}"))
            .arg("--advertised-listener-url")
            .arg(format!("tcp://{addr}"))
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {addr} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Broker { child, addr }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
