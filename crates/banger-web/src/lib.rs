//! banger's localhost web UI.
//!
//! An axum server that bangerd starts in-process on `web_listen_addr`. It
//! is a *client* of the daemon API (web → banger-client → the daemon's
//! Unix socket), never of bangerd's internals: every page is built from the
//! same calls `banger` makes. It serves embedded static pages
//! ([`assets`]), a small JSON API of its own under `/api/` ([`api`]) and
//! the daemon's event stream re-sent as server-sent events ([`follow`]).
//!
//! Every request passes [`security`]: the Host header must name this
//! server (DNS rebinding), the per-daemon secret must come as a cookie (set
//! by opening the URL with `?token=`), state-changing requests must come
//! from the UI's own origin (CSRF), and every response carries a strict
//! Content-Security-Policy.

pub mod api;
pub mod assets;
pub mod follow;
pub mod security;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use banger_client::DaemonClient;

pub use security::Secret;

/// Why the web UI cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A non-loopback listen address without `web_allow_remote = true`.
    #[error(
        "web_listen_addr {addr} is not a loopback address; the web UI controls your VMs, so it listens on loopback only unless web_allow_remote = true (unsafe: anyone who reaches it with the secret URL controls your VMs)"
    )]
    RemoteRefused {
        /// The configured address.
        addr: SocketAddr,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr} for the web UI")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The secret could not be drawn from the kernel's random source.
    #[error("cannot generate the web UI's secret")]
    Secret {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Refuses a non-loopback `addr` unless `allow_remote` (checked at daemon
/// start, before anything is bound).
pub fn check_listen_addr(addr: SocketAddr, allow_remote: bool) -> Result<(), WebError> {
    if addr.ip().is_loopback() || allow_remote {
        Ok(())
    } else {
        Err(WebError::RemoteRefused { addr })
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct WebState {
    inner: Arc<Inner>,
}

struct Inner {
    client: DaemonClient,
    secret: Secret,
    /// The address actually bound (its port is real even when 0 was asked).
    addr: SocketAddr,
    follower: follow::Follower,
}

impl WebState {
    /// State for a server bound at `addr`, talking to the daemon through
    /// `client`, guarded by `secret`. Starts nothing.
    pub fn new(client: DaemonClient, secret: Secret, addr: SocketAddr) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                secret,
                addr,
                follower: follow::Follower::default(),
            }),
        }
    }

    /// The daemon client.
    pub fn client(&self) -> &DaemonClient {
        &self.inner.client
    }

    /// The per-daemon secret.
    pub fn secret(&self) -> &Secret {
        &self.inner.secret
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The event follower (stats history and the browsers' event feed).
    pub fn follower(&self) -> &follow::Follower {
        &self.inner.follower
    }

    /// The URL that logs a browser in: `http://ADDR/?token=SECRET`.
    pub fn login_url(&self) -> String {
        format!(
            "http://{}/?token={}",
            self.inner.addr,
            self.inner.secret.as_str()
        )
    }
}

/// The whole UI: pages, assets and `/api/`, behind the security layer.
pub fn router(state: WebState) -> axum::Router {
    let routes = axum::Router::new()
        .merge(assets::routes())
        .nest("/api", api::routes());
    security::protect(routes, state.clone()).with_state(state)
}

/// A web UI that is being served.
pub struct WebServer {
    state: WebState,
}

impl WebServer {
    /// Binds `addr` (after [`check_listen_addr`]), draws a fresh secret,
    /// starts following the daemon's events at `socket` and serves the UI
    /// on the current tokio runtime for as long as that runtime runs.
    pub async fn start(
        addr: SocketAddr,
        allow_remote: bool,
        socket: std::path::PathBuf,
    ) -> Result<Self, WebError> {
        check_listen_addr(addr, allow_remote)?;
        let secret = Secret::generate().map_err(|source| WebError::Secret { source })?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| WebError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| WebError::Bind { addr, source })?;
        let state = WebState::new(DaemonClient::new(socket), secret, bound);
        tokio::spawn(follow::run(state.clone()));
        let app = router(state.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "the web UI server stopped");
            }
        });
        tracing::info!(addr = %bound, "serving the web UI");
        Ok(Self { state })
    }

    /// The URL with the secret that logs a browser in.
    pub fn login_url(&self) -> String {
        self.state.login_url()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr()
    }
}
