//! The HTTPS listener: TLS on loopback, HTTP/1.1 with upgrades and HTTP/2, every request to the API dispatcher.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

use crate::Cluster;
use crate::tls::ServingCert;

/// A running listener. Stopping it closes every connection (and so every watch).
#[derive(Debug)]
pub struct ServerHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Stops accepting and drops all connections.
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Like `stop`, without waiting (for `Drop`).
    pub fn abort(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Binds `127.0.0.1:port` (0 for any free port) and serves the cluster's API.
pub async fn serve(cluster: Arc<Cluster>, tls: &ServingCert, port: u16) -> anyhow::Result<ServerHandle> {
    let listener = bind_retrying(port).await?;
    let addr = listener.local_addr()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config()?);
    let router = crate::api::router(cluster);
    let task = tokio::spawn(async move {
        // Connections live in this set: aborting the accept task drops the set and with it every connection.
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let Ok((tcp, _peer)) = accepted else { continue };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = acceptor.clone();
                    let svc = TowerToHyperService::new(router.clone());
                    conns.spawn(async move {
                        let Ok(stream) = acceptor.accept(tcp).await else { return };
                        let builder = Builder::new(TokioExecutor::new());
                        if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    Ok(ServerHandle { addr, task: Some(task) })
}

/// A restart re-binds the same port, which may still be held for a moment by the old socket.
async fn bind_retrying(port: u16) -> anyhow::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => return Ok(l),
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
    Err(anyhow::anyhow!(
        "cannot bind 127.0.0.1:{port}: {}",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}
