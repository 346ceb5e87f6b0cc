//! HTTPS for ingestion: TLS with the server's certificate, and mutual TLS when a client
//! CA is configured (clients without a certificate may still send a bearer token). The
//! identity in a client certificate reaches the handler as a request extension.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};

use super::http::PeerIdentity;

/// Builds the TLS configuration of a listener from PEM files. `client_ca` turns on
/// client-certificate verification (optional for the client: a bearer token works too).
pub fn tls_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<Arc<ServerConfig>> {
    use anyhow::Context as _;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("ingest.tls_cert: cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("ingest.tls_cert: {} holds no valid PEM certificate", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("ingest.tls_key: {} holds no PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("ingest.client_ca: cannot read {}", ca.display()))?
            {
                roots
                    .add(c.with_context(|| format!("ingest.client_ca: {} is not PEM", ca.display()))?)
                    .with_context(|| format!("ingest.client_ca: a certificate in {} is not a CA", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .context("ingest.client_ca: cannot verify client certificates with it")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .context("ingest.tls_cert / ingest.tls_key: the key does not match the certificate")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS on `listener` until `shutdown` fires.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Arc<ServerConfig>,
    mut shutdown: tokio::sync::oneshot::Receiver<()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (stream, addr) = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "ingestion: accept failed");
                    continue;
                }
            },
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(stream).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!(peer = %addr, error = %e, "ingestion: TLS handshake failed");
                    return;
                }
            };
            let identity = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|der| {
                waybill_control::auth::certificate_identity(der)
                    .inspect_err(|e| tracing::warn!(peer = %addr, error = %e, "ingestion: unusable client certificate"))
                    .ok()
            });
            let service = TowerToHyperService::new(
                router
                    .layer(axum::Extension(PeerIdentity(identity)))
                    .layer(axum::Extension(axum::extract::ConnectInfo(addr))),
            );
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!(peer = %addr, error = %e, "ingestion: connection ended with an error");
            }
        });
    }
}
