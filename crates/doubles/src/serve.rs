//! The loopback HTTP/1 server both doubles run on: its own thread and tokio runtime (so a
//! double works from plain `#[test]`s and from inside another runtime alike), hyper
//! serving an axum router per connection, and the two things axum alone cannot do — close
//! a connection without answering, and refuse connections while "down".

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Notify, watch};

use crate::faults::DownMode;
use crate::{Error, Result};

/// Handed to every request (as an axum `Extension`) so a handler can close its connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnKill(Arc<Notify>);

impl ConnKill {
    /// Close this request's connection without answering; never returns an answer.
    pub(crate) async fn drop_connection(&self) -> Response {
        self.0.notify_one();
        std::future::pending::<Response>().await
    }
}

/// Up, or down in one of two ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Availability {
    Up,
    Down(DownMode),
}

/// A running server: its address, availability switch and thread.
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    availability: watch::Sender<Availability>,
    shutdown: watch::Sender<bool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Server {
    /// Bind `127.0.0.1:0` and serve `router` on a thread of its own.
    pub(crate) fn start(name: &str, router: Router) -> Result<Self> {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(Error::Bind)?;
        std_listener.set_nonblocking(true).map_err(Error::Bind)?;
        let addr = std_listener.local_addr().map_err(Error::Bind)?;
        let (availability, avail_rx) = watch::channel(Availability::Up);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::Runtime)?;
        let thread = std::thread::Builder::new()
            .name(format!("double-{name}"))
            .spawn(move || runtime.block_on(accept_loop(std_listener, addr, router, avail_rx, shutdown_rx)))
            .map_err(Error::Runtime)?;
        Ok(Self { addr, availability, shutdown, thread: Mutex::new(Some(thread)) })
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn availability(&self) -> Availability {
        *self.availability.borrow()
    }

    pub(crate) fn set_availability(&self, to: Availability) {
        self.availability.send_replace(to);
        if to == Availability::Up {
            // Wait until the listener is back, so a test's next call does not race it.
            for _ in 0..200 {
                if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(50)).is_ok() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        } else if to == Availability::Down(DownMode::Refuse) {
            for _ in 0..200 {
                if std::net::TcpStream::connect_timeout(&self.addr, Duration::from_millis(50)).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        if let Some(thread) = self.thread.lock().unwrap().take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(
    std_listener: std::net::TcpListener,
    addr: SocketAddr,
    router: Router,
    mut avail: watch::Receiver<Availability>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listener = match tokio::net::TcpListener::from_std(std_listener) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(error = %e, "double could not adopt its listener");
            return;
        }
    };
    loop {
        if *shutdown.borrow() {
            return;
        }
        let refusing = *avail.borrow() == Availability::Down(DownMode::Refuse);
        if refusing {
            listener = None;
            tokio::select! {
                _ = avail.changed() => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let Some(l) = listener.as_ref() else {
            listener = rebind(addr).await;
            if listener.is_none() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve_connection(stream, router.clone(), avail.clone(), shutdown.clone()));
                }
            }
            _ = avail.changed() => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn rebind(addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    for _ in 0..100 {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    tracing::error!(%addr, "double could not bind its address again after being down");
    None
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: Router,
    mut avail: watch::Receiver<Availability>,
    mut shutdown: watch::Receiver<bool>,
) {
    let kill = Arc::new(Notify::new());
    let service = TowerToHyperService::new(router.layer(axum::Extension(ConnKill(kill.clone()))));
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    let refused = async {
        loop {
            if *avail.borrow_and_update() == Availability::Down(DownMode::Refuse) {
                return;
            }
            if avail.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = conn => {}
        _ = kill.notified() => {}
        _ = refused => {}
        _ = shutdown.changed() => {}
    }
}
