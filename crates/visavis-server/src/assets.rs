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
            let mime = if path.ends_with(".d.ts") {
                // mime_guess takes `.ts` for an MPEG transport stream.
                "application/typescript; charset=utf-8".to_owned()
            } else {
                mime_guess::from_path(path)
                    .first_or_octet_stream()
                    .as_ref()
                    .to_owned()
            };
            (
                [
                    (header::CONTENT_TYPE, mime),
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

/// A file of the JavaScript SDK (`web/sdk/`), which pages on any origin may `import()`: module
/// scripts are fetched with CORS, so these files (and only these: the app's own pages stay
/// same-origin) carry `Access-Control-Allow-Origin: *`. They are public and fetched without
/// credentials; who may then open a session is still up to the WebSocket's origin check.
pub fn sdk_file(path: &str) -> Response {
    let mut response = file(&format!("sdk/{path}"));
    if response.status().is_success() {
        response.headers_mut().insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            header::HeaderValue::from_static("*"),
        );
    }
    response
}
