//! What every request to the web UI goes through, in order:
//!
//! 1. **Host** must be the listen address, `localhost:PORT` or
//!    `127.0.0.1:PORT` (`[::1]:PORT` too): a page on another site whose
//!    name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name,
//!    and gets 421.
//! 2. **The secret**: opening any page with `?token=SECRET` sets it as an
//!    HttpOnly, SameSite=Strict cookie and redirects to the same page
//!    without the token (so it does not stay in the history or the address
//!    bar); every other request needs that cookie, else 401. Compared in
//!    constant time.
//! 3. **Origin**: a state-changing request (anything but GET and HEAD)
//!    must carry `Origin: http://<its Host>`, else 403, so another site
//!    cannot make the browser act (CSRF) even if SameSite were bypassed.
//!
//! Every response, refusals included, carries a Content-Security-Policy
//! (`default-src 'self'; frame-ancestors 'none'`), `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
//! No CORS header is ever sent.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::WebState;

/// The policy on every response: only this origin's scripts, styles and
/// images; never inside a frame; no `<base>`; forms post here only.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Bytes of randomness in a secret.
const SECRET_BYTES: usize = 32;

/// The per-daemon secret: 32 random bytes, as 64 lowercase hex digits.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never in a log line.
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Draws a new secret from the kernel's random source.
    pub fn generate() -> Result<Self, std::io::Error> {
        let mut bytes = [0u8; SECRET_BYTES];
        let mut filled = 0;
        while filled < bytes.len() {
            filled += rustix::rand::getrandom(
                &mut bytes[filled..],
                rustix::rand::GetRandomFlags::empty(),
            )
            .map_err(std::io::Error::from)?;
        }
        Ok(Self::from_bytes(&bytes))
    }

    /// The secret made of `bytes` (tests use fixed ones).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
    }

    /// The hex text, as it appears in the URL and the cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `candidate` is this secret, in time that does not depend on
    /// where they differ.
    pub fn matches(&self, candidate: &str) -> bool {
        let expected = self.0.as_bytes();
        let candidate = candidate.as_bytes();
        if expected.len() != candidate.len() {
            return false;
        }
        let difference = expected
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// The cookie's name; it carries the port because browsers share cookies
/// across the ports of one host, and two daemons (two users) may each
/// serve a UI on localhost.
pub fn cookie_name(addr: SocketAddr) -> String {
    format!("banger_web_{}", addr.port())
}

/// Wraps `routes` in the checks of this module.
pub fn protect(routes: axum::Router<WebState>, state: WebState) -> axum::Router<WebState> {
    routes
        .layer(axum::middleware::from_fn_with_state(state, guard))
        .layer(axum::middleware::map_response(add_headers))
}

/// The Host values this server answers to.
fn host_allowed(host: &str, addr: SocketAddr) -> bool {
    let port = addr.port();
    let loopback = [
        format!("localhost:{port}"),
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port).to_string(),
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port).to_string(),
    ];
    host.eq_ignore_ascii_case(&addr.to_string())
        || loopback.iter().any(|name| host.eq_ignore_ascii_case(name))
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

/// The secret from the `Cookie` header(s), if one is ours.
fn cookie_secret<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// The `token` query parameter and the query without it.
fn split_token(query: &str) -> (Option<&str>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        match pair.strip_prefix("token=") {
            Some(value) => token = Some(value),
            None => rest.push(pair),
        }
    }
    (token, rest.join("&"))
}

fn refusal(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// The checks, in the order the module documents.
async fn guard(State(state): State<WebState>, request: Request, next: Next) -> Response {
    let addr = state.addr();
    let headers = request.headers();
    let Some(host) = header_text(headers, header::HOST) else {
        return refusal(StatusCode::MISDIRECTED_REQUEST, "missing Host header");
    };
    if !host_allowed(host, addr) {
        return refusal(
            StatusCode::MISDIRECTED_REQUEST,
            "this server answers only to its own address or localhost",
        );
    }

    let (token, rest) = split_token(request.uri().query().unwrap_or(""));
    if let Some(token) = token {
        if request.method() != Method::GET || !state.secret().matches(token) {
            return refusal(StatusCode::UNAUTHORIZED, "invalid token");
        }
        let mut location = request.uri().path().to_owned();
        if !rest.is_empty() {
            location.push('?');
            location.push_str(&rest);
        }
        let cookie = format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            cookie_name(addr),
            state.secret().as_str()
        );
        return match (
            HeaderValue::from_str(&cookie),
            HeaderValue::from_str(&location),
        ) {
            (Ok(cookie), Ok(location)) => (
                StatusCode::SEE_OTHER,
                [(header::SET_COOKIE, cookie), (header::LOCATION, location)],
            )
                .into_response(),
            _ => refusal(StatusCode::BAD_REQUEST, "invalid path"),
        };
    }

    let authorised = cookie_secret(headers, &cookie_name(addr))
        .is_some_and(|secret| state.secret().matches(secret));
    if !authorised {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "open the URL that `banger web` prints (it carries this daemon's secret)",
        );
    }

    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    if !safe {
        let expected = format!("http://{host}");
        let origin_ok = header_text(headers, header::ORIGIN)
            .is_some_and(|origin| origin.eq_ignore_ascii_case(&expected));
        if !origin_ok {
            return refusal(
                StatusCode::FORBIDDEN,
                "state-changing requests must come from the web UI's own pages",
            );
        }
    }
    next.run(request).await
}

/// Adds the security headers to every response.
async fn add_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
