//! Counts every gRPC call the control plane answers in `waybill_grpc_requests_total`
//! (labels `grpc_service`, `grpc_method`, `grpc_code`), as a tower layer around the whole router, so the
//! Waybill services, `grpc.health.v1` and reflection are counted alike.
//!
//! The status code is read where gRPC puts it: in the response headers of a
//! trailers-only answer (every error a handler returns), otherwise in the trailers at the
//! end of the body. A body dropped before its trailers (the client went away) counts as
//! `CANCELLED`. Labels stay bounded whatever a client sends: a service that the server
//! does not serve is `unknown`, and so is the method of any call answered `UNIMPLEMENTED`.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::Code;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tonic::codegen::{Bytes, Service};
use waybill_telemetry::metrics as names;

/// Label value for a service or method the server does not know.
pub const UNKNOWN: &str = "unknown";

/// The layer: wraps the router in a [`GrpcMetrics`] service.
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    services: Arc<BTreeSet<String>>,
}

impl GrpcMetricsLayer {
    /// Counts calls to `services` (full names, e.g. `waybill.v1.Approvals`) under their
    /// own names and every other call under `unknown`.
    pub fn new<I, S>(services: I) -> GrpcMetricsLayer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        GrpcMetricsLayer { services: Arc::new(services.into_iter().map(Into::into).collect()) }
    }
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> GrpcMetrics<S> {
        GrpcMetrics { inner, services: self.services.clone() }
    }
}

/// The service the layer builds.
#[derive(Debug, Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    services: Arc<BTreeSet<String>>,
}

/// The service and method of a request path `/<package.Service>/<Method>`, with
/// `unknown` for a service not in `known` (and then for its method too).
pub fn route(path: &str, known: &BTreeSet<String>) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let method = parts.next().unwrap_or_default();
    if known.contains(service) && !method.is_empty() && !method.contains('/') {
        (service.to_string(), method.to_string())
    } else {
        (UNKNOWN.to_string(), UNKNOWN.to_string())
    }
}

/// The canonical name of a gRPC status code (`OK`, `NOT_FOUND`, …), as the gRPC
/// specification spells it.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The `grpc-status` of a header or trailer map, if it has one.
fn status_of(headers: &HeaderMap) -> Option<Code> {
    let v = headers.get("grpc-status")?;
    let n: i32 = v.to_str().ok()?.trim().parse().ok()?;
    Some(Code::from_i32(n))
}

/// One call, counted once when its status is known.
#[derive(Debug)]
struct Call {
    service: String,
    method: String,
}

impl Call {
    fn record(self, code: Code) {
        let method = if code == Code::Unimplemented { UNKNOWN.to_string() } else { self.method };
        metrics::counter!(
            names::GRPC_REQUESTS,
            "grpc_service" => self.service,
            "grpc_method" => method,
            "grpc_code" => code_name(code),
        )
        .increment(1);
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GrpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Unpin + Send + 'static,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (service, method) = route(req.uri().path(), &self.services);
        let call = Call { service, method };
        let fut = self.inner.call(req);
        Box::pin(async move {
            match fut.await {
                Ok(resp) => {
                    let (parts, body) = resp.into_parts();
                    let pending = match status_of(&parts.headers) {
                        Some(code) => {
                            call.record(code);
                            None
                        }
                        None => Some(call),
                    };
                    Ok(Response::from_parts(parts, MeteredBody { inner: body, call: pending }))
                }
                Err(e) => {
                    call.record(Code::Unknown);
                    Err(e)
                }
            }
        })
    }
}

/// A response body that counts its call when the trailers pass (or when it ends or is
/// dropped without them).
#[derive(Debug)]
pub struct MeteredBody<B> {
    inner: B,
    call: Option<Call>,
}

impl<B> http_body::Body for MeteredBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of)
                    && let Some(call) = this.call.take()
                {
                    call.record(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.take() {
                    call.record(Code::Unknown);
                }
            }
            Poll::Ready(None) => {
                // A gRPC body always ends with its status; one without it is broken.
                if let Some(call) = this.call.take() {
                    call.record(Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.record(Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> BTreeSet<String> {
        ["waybill.v1.Approvals".to_string(), "grpc.health.v1.Health".to_string()].into()
    }

    #[test]
    fn a_served_method_is_labelled_by_service_and_method() {
        assert_eq!(
            route("/waybill.v1.Approvals/Approve", &known()),
            ("waybill.v1.Approvals".to_string(), "Approve".to_string())
        );
        assert_eq!(route("/grpc.health.v1.Health/Check", &known()).1, "Check");
    }

    #[test]
    fn paths_a_client_makes_up_do_not_become_labels() {
        for path in ["/evil.Service/Approve", "/", "", "/waybill.v1.Approvals", "/waybill.v1.Approvals/a/b"] {
            assert_eq!(route(path, &known()), (UNKNOWN.to_string(), UNKNOWN.to_string()), "{path}");
        }
    }

    #[test]
    fn codes_have_their_grpc_names() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(Code::from_i32(16)), "UNAUTHENTICATED");
    }

    #[test]
    fn the_status_comes_from_grpc_status() {
        let mut h = HeaderMap::new();
        assert_eq!(status_of(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(status_of(&h), Some(Code::NotFound));
    }
}
