//! The web console's pages, embedded in the binary: no Node at build or run time. They carry no
//! data; everything they show comes from the API with the token the login URL gives.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::AppState;

const INDEX: &str = include_str!("console/index.html");

/// The console's routes (public: the pages hold no data).
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX,
    )
        .into_response()
}
