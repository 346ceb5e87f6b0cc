//! The global subscriber: log lines, and (when an endpoint is configured) an OpenTelemetry
//! layer exporting spans over OTLP/gRPC through a batch span processor.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{FilterExt as _, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::{LogFormat, SPAN_TARGET};

/// A telemetry set-up failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The OTLP exporter could not be built from its settings.
    #[error(
        "OTLP trace exporter for {endpoint:?} cannot be built: {reason}; check OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT (a URL such as http://otel-collector:4317) and OTEL_EXPORTER_OTLP_PROTOCOL (only \"grpc\" is supported), or unset them to turn export off"
    )]
    Exporter {
        /// The endpoint asked for.
        endpoint: String,
        /// What the exporter said.
        reason: String,
    },
    /// The exporter's I/O thread could not be started.
    #[error("cannot start the trace exporter's I/O thread: {0}")]
    Runtime(#[from] std::io::Error),
}

/// Result with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where spans are exported. Read from the standard OpenTelemetry environment by
/// [`TraceExport::from_env`]; tests and tools build one with [`TraceExport::to`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceExport {
    /// OTLP/gRPC endpoint (`http://host:4317`, or `https://` for TLS); `None` exports
    /// nothing and installs no OpenTelemetry layer.
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// How long the batch processor waits before sending a batch; `None` leaves it to
    /// `OTEL_BSP_SCHEDULE_DELAY` (5 s by default).
    pub schedule_delay: Option<Duration>,
}

/// Default `service.name`.
pub const DEFAULT_SERVICE_NAME: &str = "waybill";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

fn service_name_from_env() -> String {
    env("OTEL_SERVICE_NAME")
        .or_else(|| {
            env("OTEL_RESOURCE_ATTRIBUTES")?
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim() == "service.name")
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_string())
}

impl TraceExport {
    /// From the standard environment: the endpoint is `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// else `OTEL_EXPORTER_OTLP_ENDPOINT`, else none (export off). `OTEL_SDK_DISABLED=true`
    /// or an `OTEL_TRACES_EXPORTER` without `otlp` (e.g. `none`) turns export off too. The
    /// service name is `OTEL_SERVICE_NAME`, else `service.name` in
    /// `OTEL_RESOURCE_ATTRIBUTES`, else `waybill`.
    pub fn from_env() -> Self {
        let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || env("OTEL_TRACES_EXPORTER")
                .is_some_and(|v| !v.split(',').any(|e| e.trim().eq_ignore_ascii_case("otlp")));
        let endpoint = if disabled {
            None
        } else {
            env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
        };
        TraceExport { endpoint, service_name: service_name_from_env(), schedule_delay: None }
    }

    /// Export to `endpoint` (the service name still comes from the environment).
    pub fn to(endpoint: impl Into<String>) -> Self {
        TraceExport { endpoint: Some(endpoint.into()), service_name: service_name_from_env(), schedule_delay: None }
    }

    /// No export.
    pub fn disabled() -> Self {
        TraceExport { endpoint: None, service_name: DEFAULT_SERVICE_NAME.into(), schedule_delay: None }
    }
}

/// The provider of the installed subscriber, for [`shutdown`] and [`TelemetryGuard::flush`].
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

/// Keeps trace export running; dropping it sends the spans still queued and shuts the
/// exporter down. Hold it in `main` until the process exits.
#[derive(Debug)]
#[must_use = "dropping the guard shuts trace export down; keep it until the process exits"]
pub struct TelemetryGuard {
    exporting: bool,
}

impl TelemetryGuard {
    /// Whether spans are being exported (an endpoint was configured).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Sends every span ended so far and waits for the exporter to take them (at most a
    /// few seconds).
    pub fn flush(&self) {
        let provider = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(p) = provider
            && let Err(e) = p.force_flush()
        {
            tracing::warn!(error = %e, "flushing trace export failed");
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if self.exporting {
            shutdown();
        }
    }
}

/// Flushes and shuts down trace export (a no-op when nothing is exported). Spans ended
/// afterwards are dropped.
pub fn shutdown() {
    let provider = PROVIDER.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(p) = provider
        && let Err(e) = p.shutdown()
    {
        eprintln!("waybill: trace export did not shut down cleanly: {e}");
    }
}

/// Installs the global subscriber with an explicit export setting. See [`crate::init`]
/// for the log side. A second call installs nothing and returns an inert guard.
pub fn init_with(format: LogFormat, filter: &str, export: TraceExport) -> Result<TelemetryGuard> {
    let log_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(filter));
    // Trace spans are for the exporter only: keeping them out of the log lines means that
    // without an exporter nobody is interested in them and their call sites stay disabled.
    let log_filter = log_filter.and(filter_fn(|m| !(m.is_span() && m.target() == SPAN_TARGET)));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt.with_target(false).with_filter(log_filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(log_filter).boxed(),
    };

    let provider = match &export.endpoint {
        Some(endpoint) => Some(build_provider(endpoint, &export)?),
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        let tracer = p.tracer("waybill");
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_filter(otel_filter())
    });
    let installed = tracing_subscriber::registry().with(fmt).with(otel).try_init().is_ok();
    match provider {
        Some(p) if installed => {
            *PROVIDER.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
            tracing::info!(
                endpoint = export.endpoint.as_deref().unwrap_or_default(),
                service.name = %export.service_name,
                "exporting traces over OTLP/gRPC"
            );
            Ok(TelemetryGuard { exporting: true })
        }
        Some(p) => {
            let _ = p.shutdown();
            Ok(TelemetryGuard { exporting: false })
        }
        None => Ok(TelemetryGuard { exporting: false }),
    }
}

/// What the OpenTelemetry layer sees: spans and events at info and above (events become
/// span events of the span they happen in), nothing from the export machinery itself.
fn otel_filter() -> Targets {
    Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("opentelemetry", LevelFilter::OFF)
        .with_target("opentelemetry_sdk", LevelFilter::OFF)
        .with_target("opentelemetry_otlp", LevelFilter::OFF)
        .with_target("tonic", LevelFilter::OFF)
        .with_target("h2", LevelFilter::OFF)
        .with_target("hyper", LevelFilter::OFF)
        .with_target("tower", LevelFilter::OFF)
}

fn build_provider(endpoint: &str, export: &TraceExport) -> Result<SdkTracerProvider> {
    let exporter = OnRuntime::build(endpoint)?;
    let mut batch = opentelemetry_sdk::trace::BatchConfigBuilder::default();
    if let Some(delay) = export.schedule_delay {
        batch = batch.with_scheduled_delay(delay);
    }
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch.build()).build();
    let resource = Resource::builder()
        .with_service_name(export.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    // The sampler is left to the SDK, which reads OTEL_TRACES_SAMPLER / _ARG
    // (default: parentbased_always_on).
    Ok(SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource).build())
}

/// The OTLP/gRPC exporter on a small Tokio runtime of its own.
///
/// The SDK's batch processor exports from a plain thread through a futures executor, but
/// tonic's transport needs a Tokio reactor; Waybill's workers are plain threads too. So
/// the exporter gets one I/O thread: the channel is built inside it and every export is
/// driven on it.
#[derive(Debug)]
struct OnRuntime {
    inner: opentelemetry_otlp::SpanExporter,
    runtime: Option<tokio::runtime::Runtime>,
    failures: AtomicU64,
}

impl OnRuntime {
    fn build(endpoint: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otel-export")
            .enable_all()
            .build()?;
        let inner = {
            let _entered = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()
        };
        match inner {
            Ok(inner) => Ok(OnRuntime { inner, runtime: Some(runtime), failures: AtomicU64::new(0) }),
            Err(e) => {
                runtime.shutdown_background();
                Err(Error::Exporter { endpoint: endpoint.to_string(), reason: e.to_string() })
            }
        }
    }
}

impl SpanExporter for OnRuntime {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let n = batch.len();
        let result = match &self.runtime {
            Some(rt) => rt.block_on(self.inner.export(batch)),
            None => Ok(()),
        };
        match &result {
            Err(e) => {
                // The first failure and then one in a hundred: a collector that is down
                // must not flood the log.
                let failures = self.failures.fetch_add(1, Ordering::Relaxed);
                if failures.is_multiple_of(100) {
                    tracing::warn!(error = %e, spans = n, failures = failures + 1, "trace export failed; spans dropped");
                }
            }
            Ok(()) => {
                self.failures.store(0, Ordering::Relaxed);
            }
        }
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl Drop for OnRuntime {
    fn drop(&mut self) {
        // Never block (or panic) dropping a runtime from inside another one.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
