//! A client for the control plane, as the `waybill` CLI uses it: connects over plain
//! HTTP/2 or TLS (optionally presenting a client certificate) and sends the bearer
//! token with every call.

use std::path::PathBuf;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{Error, Result};
use crate::proto;

/// Where and how to connect.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// `http://127.0.0.1:8421` or `https://…`.
    pub server: String,
    /// Bearer token.
    pub token: Option<String>,
    /// CA that signed the server's certificate (PEM), for `https`.
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM), for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM).
    pub client_key: Option<PathBuf>,
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Debug, Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(t) = &self.0 {
            request.metadata_mut().insert("authorization", t.clone());
        }
        Ok(request)
    }
}

/// A channel with the token interceptor.
pub type AuthChannel = InterceptedService<Channel, BearerToken>;

/// Clients of the three services over one connection.
#[derive(Debug, Clone)]
pub struct Clients {
    /// `waybill.v1.Approvals`.
    pub approvals: proto::approvals_client::ApprovalsClient<AuthChannel>,
    /// `waybill.v1.Queries`.
    pub queries: proto::queries_client::QueriesClient<AuthChannel>,
    /// `waybill.v1.Audit`.
    pub audit: proto::audit_client::AuditClient<AuthChannel>,
    /// `waybill.v1.Workbench`.
    pub workbench: proto::workbench_client::WorkbenchClient<AuthChannel>,
    /// `waybill.v1.Reconciliation`.
    pub reconciliation: proto::reconciliation_client::ReconciliationClient<AuthChannel>,
}

fn read(what: &str, p: &PathBuf) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| Error::InvalidArgument(format!("cannot read the {what} {}: {e}", p.display())))
}

/// Connects to `opts.server`.
pub async fn connect(opts: &ClientOptions) -> Result<Clients> {
    let mut endpoint = Endpoint::from_shared(opts.server.clone()).map_err(|e| {
        Error::InvalidArgument(format!("--server {:?} is not a URL like http://127.0.0.1:8421: {e}", opts.server))
    })?;
    if opts.server.starts_with("https://") || opts.ca_cert.is_some() || opts.client_cert.is_some() {
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &opts.ca_cert {
            tls = tls.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
        }
        match (&opts.client_cert, &opts.client_key) {
            (Some(c), Some(k)) => {
                tls = tls.identity(Identity::from_pem(read("client certificate", c)?, read("client key", k)?))
            }
            (None, None) => {}
            _ => return Err(Error::InvalidArgument("--client-cert and --client-key go together".into())),
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| Error::InvalidArgument(format!("TLS settings cannot be used: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        Error::Internal(format!(
            "cannot reach the control plane at {}: {e}; is `waybill serve` running there?",
            opts.server
        ))
    })?;
    let token = match &opts.token {
        None => None,
        Some(t) => Some(
            format!("Bearer {t}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| Error::InvalidArgument("the token contains characters not allowed in a header".into()))?,
        ),
    };
    let auth = BearerToken(token);
    Ok(Clients {
        approvals: proto::approvals_client::ApprovalsClient::with_interceptor(channel.clone(), auth.clone()),
        queries: proto::queries_client::QueriesClient::with_interceptor(channel.clone(), auth.clone()),
        audit: proto::audit_client::AuditClient::with_interceptor(channel.clone(), auth.clone()),
        workbench: proto::workbench_client::WorkbenchClient::with_interceptor(channel.clone(), auth.clone()),
        reconciliation: proto::reconciliation_client::ReconciliationClient::with_interceptor(channel, auth),
    })
}
