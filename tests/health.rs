//! Kubernetes-style probes: `grpc.health.v1` on the control plane follows the node's
//! readiness — NOT_SERVING while the log is unreachable or a partition is stuck, SERVING
//! again once it recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use waybill_control::{ControlConfig, ControlDeps, ControlServer, ReadinessCheck};
use waybill_log::embedded::{EmbeddedLog, EmbeddedOptions};
use waybill_projection::ProjectionStore;

#[derive(Debug)]
struct Switch(AtomicBool);

impl ReadinessCheck for Switch {
    fn problems(&self) -> Vec<String> {
        if self.0.load(Ordering::Relaxed) { vec![] } else { vec!["partition 3 stuck".into()] }
    }
}

#[test]
fn grpc_health_follows_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(&dir.path().join("log"), EmbeddedOptions::default()).unwrap());
    let projections = Arc::new(ProjectionStore::open(dir.path().join("projections")).unwrap());
    let ready = Arc::new(Switch(AtomicBool::new(true)));
    let cfg = ControlConfig { listen: "127.0.0.1:0".into(), allow_anonymous: true, ..ControlConfig::default() };
    let server = ControlServer::start(
        &cfg,
        ControlDeps {
            log,
            projections,
            catalog: Default::default(),
            policy: Default::default(),
            audit_dir: dir.path().join("audit"),
            partitions: 1,
            readiness: Some(ready.clone()),
            reconciler: None,
        },
    )
    .unwrap();
    let url = format!("http://{}", server.addr());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = |service: &str| {
        rt.block_on(async {
            let channel = tonic::transport::Endpoint::from_shared(url.clone()).unwrap().connect().await.unwrap();
            let mut client = HealthClient::new(channel);
            let r = client.check(HealthCheckRequest { service: service.into() }).await.unwrap();
            r.into_inner().status()
        })
    };
    let wait_for = |want: ServingStatus| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = status("");
            if got == want {
                return;
            }
            assert!(Instant::now() < deadline, "health stayed {got:?}, wanted {want:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for(ServingStatus::Serving);
    ready.0.store(false, Ordering::Relaxed);
    wait_for(ServingStatus::NotServing);
    assert_eq!(status("waybill.v1.Approvals"), ServingStatus::NotServing);
    ready.0.store(true, Ordering::Relaxed);
    wait_for(ServingStatus::Serving);
    server.shutdown();
}
