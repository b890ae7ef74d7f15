//! Serving a router with the timeout `axum::serve` leaves out.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// How long a client may take to send its request headers, by default.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` over HTTP/1, like `axum::serve`, but with a timeout on
/// reading each request's headers ([`HEADER_READ_TIMEOUT`] unless
/// [`header_read_timeout`](Serve::header_read_timeout) says otherwise): `axum::serve` gives
/// hyper no timer, so a client that never finishes its headers holds its connection (and a
/// socket) forever. Bodies are the router's to bound, see [`Limits`](super::Limits).
///
/// Await it (it runs until dropped; a failed `accept`, such as too many open files, is
/// logged and retried after a pause), or spawn it.
///
/// ```no_run
/// # async fn run(app: axum::Router) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:8080").await?;
/// wecom_kf::callback::server::serve(listener, app).await
/// # }
/// ```
pub fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> Serve {
    Serve {
        listener,
        app,
        header_read_timeout: HEADER_READ_TIMEOUT,
    }
}

/// The server [`serve`] returns; await it to run it.
#[must_use = "a server does nothing until awaited"]
pub struct Serve {
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_read_timeout: Duration,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("local_addr", &self.listener.local_addr().ok())
            .field("header_read_timeout", &self.header_read_timeout)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// How long a client may take to send a request's headers before its connection is
    /// closed.
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }
}

impl IntoFuture for Serve {
    type Output = std::io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            loop {
                let stream = match self.listener.accept().await {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        wait_after(&error).await;
                        continue;
                    }
                };
                let service = TowerToHyperService::new(self.app.clone());
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(self.header_read_timeout);
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "a connection ended with an error");
                    }
                });
            }
        })
    }
}

/// After a failed `accept`: nothing for errors of one connection, a pause for the others
/// (out of file descriptors, say), which would otherwise fail again at once.
async fn wait_after(error: &std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed; trying again in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
