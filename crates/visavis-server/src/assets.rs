//! The web app's files: read from `web/` at run time in debug builds, embedded in release builds.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::RustEmbed;

use crate::http_error::HttpError;

#[derive(RustEmbed)]
#[folder = "../../web/"]
struct Web;

/// The file at `path` (relative to `web/`), or a JSON 404.
pub fn file(path: &str) -> Response {
    match Web::get(path) {
        Some(file) => {
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            (
                [
                    (header::CONTENT_TYPE, mime.as_ref().to_owned()),
                    // Files change with the binary; revalidation is cheap on loopback and LANs.
                    (header::CACHE_CONTROL, "no-cache".to_owned()),
                ],
                file.data,
            )
                .into_response()
        }
        None => {
            HttpError::new(StatusCode::NOT_FOUND, "not_found", format!("no file /{path}")).into_response()
        }
    }
}
