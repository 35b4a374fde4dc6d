//! The accept loop: HTTP/1.1 connections served by hyper with the limits
//! `axum::serve` cannot set (it gives hyper no timer).
//!
//! - **Header read timeout** (`server.header_read_timeout`, 10 s): a client
//!   that sends part of a request head and goes silent is disconnected.
//!   hyper starts the same timer when a kept-alive connection goes idle, so
//!   it also closes idle connections that send nothing more.
//! - **Connection cap** (`server.max_connections`): past it the loop stops
//!   accepting, and new connections wait in the kernel's backlog until one
//!   closes, so stalled sockets cannot exhaust file descriptors.
//! - **Graceful stop**: on shutdown the loop stops accepting, connections
//!   finish the request in hand and close.
//! - **Upgrades**: connections allow `Upgrade` (the gateway hands a
//!   WebSocket over to the application), so the graceful stop is done here
//!   rather than by hyper-util's `GracefulShutdown`, which cannot watch an
//!   upgradeable connection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a client may take to send a request head (and how long a
    /// kept-alive connection may sit idle).
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `service` on `listener` until `shutdown` completes, then lets open
/// connections finish their requests.
pub async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: tower::Service<
            http::Request<Body>,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static,
{
    let max = limits.max_connections.max(1);
    let permits = Arc::new(Semaphore::new(max));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // it was accepted: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = service.clone();
        let handler = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let mut req = req.map(Body::new);
            req.extensions_mut().insert(ConnectInfo(peer));
            service.clone().oneshot(req)
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), handler)
            .with_upgrades();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = ended {
                // Timeouts and clients that went away: routine, not errors.
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a permit until it has closed.
    let _ = permits
        .acquire_many(u32::try_from(max).unwrap_or(u32::MAX))
        .await;
    Ok(())
}
