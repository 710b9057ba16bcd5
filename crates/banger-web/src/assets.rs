//! The pages: one HTML shell, one script, one stylesheet and an icon,
//! embedded in the binary (no CDN, works offline). The script routes
//! between the views (`#/`, `#/vm/NAME`, `#/images`, `#/kernels`,
//! `#/create`) itself, so every view is the same small download.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::WebState;

/// The HTML shell.
pub const INDEX_HTML: &str = include_str!("../assets/index.html");
/// The script: views, the event feed, charts.
pub const APP_JS: &str = include_str!("../assets/app.js");
/// The stylesheet.
pub const APP_CSS: &str = include_str!("../assets/app.css");
/// The icon.
pub const ICON_SVG: &str = include_str!("../assets/icon.svg");

/// Every embedded asset, for the size budget's test.
pub const ALL: [&str; 4] = [INDEX_HTML, APP_JS, APP_CSS, ICON_SVG];

/// The asset routes.
pub fn routes() -> axum::Router<WebState> {
    axum::Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/app.css",
            get(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/assets/icon.svg",
            get(|| async { asset("image/svg+xml", ICON_SVG) }),
        )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
