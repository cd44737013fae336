//! The web console, embedded in the binary: no Node at build or run time. One HTML page, a
//! stylesheet and a small script that draws everything from the public API (`/v1`) with the
//! token the login URL carries. The pages hold no data, so they need no token; the script
//! sends the token as `Authorization: Bearer`, never in a URL (streams too are read with
//! `fetch`, not `EventSource`), so it never reaches a server or proxy log.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

/// The page.
pub const INDEX: &str = include_str!("console/index.html");
/// The script.
pub const SCRIPT: &str = include_str!("console/app.js");
/// The stylesheet.
pub const STYLE: &str = include_str!("console/app.css");
/// The icon.
pub const ICON: &str = include_str!("console/icon.svg");

/// Where the assets are served.
pub const SCRIPT_PATH: &str = "/console/app.js";
/// Where the stylesheet is served.
pub const STYLE_PATH: &str = "/console/app.css";
/// Where the icon is served.
pub const ICON_PATH: &str = "/console/icon.svg";

/// Only this origin's script and styles run; nothing is framed; the login URL (which carries
/// the token in its fragment until the script removes it) is never sent as a referrer.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The console's routes (public: the pages hold no data).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            SCRIPT_PATH,
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            STYLE_PATH,
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .route(ICON_PATH, get(|| async { asset("image/svg+xml", ICON) }))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // The assets change with the binary; a restart must not leave an old script running.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
