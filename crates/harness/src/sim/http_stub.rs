//! What the HTTP stand-ins (`receiver`, `twilio_rest`) share: an axum app served in the
//! background on an address of 127.0.0.1 for as long as its handle lives.

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running stand-in; stops when dropped, so a test that ends (or panics) leaves no server.
pub(crate) struct Served {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Served {
    /// Binds `addr` (port 0: a free one) and serves `app` there.
    pub(crate) async fn start(addr: &str, app: Router) -> std::io::Result<Served> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Served { addr, task })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}
