//! Security headers on every response: a Content-Security-Policy without inline script, who may
//! frame the page (`--frame-ancestors`), which features it may use, no MIME sniffing, no
//! `Referer` (room names are in URLs), and HSTS when served over HTTPS.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

/// The headers, built once from the settings.
#[derive(Debug, Clone)]
pub struct SecurityHeaders(Arc<[(HeaderName, HeaderValue)]>);

impl SecurityHeaders {
    /// `frame_ancestors`: origins (besides this one) whose pages may embed ours and give it the
    /// camera and microphone. `https`: whether the page is served over HTTPS (adds HSTS).
    pub fn new(frame_ancestors: &[String], https: bool) -> anyhow::Result<Self> {
        for origin in frame_ancestors {
            // Spliced into two headers: anything but an origin could add directives.
            let ok = ["https://", "http://"].iter().any(|scheme| {
                origin.strip_prefix(scheme).is_some_and(|host| {
                    !host.is_empty()
                        && host
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
                })
            });
            anyhow::ensure!(
                ok,
                "--frame-ancestors {origin:?}: not an origin like https://host[:port]"
            );
        }
        let ancestors: String = frame_ancestors.iter().map(|o| format!(" {o}")).collect();
        let allow: String = frame_ancestors.iter().map(|o| format!(" \"{o}\"")).collect();
        // WebSockets to this origin are `connect-src 'self'` (CSP 3); video elements play
        // MediaStreams (srcObject), which media-src does not govern.
        let csp = format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; media-src 'self' blob:; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'self'{ancestors}"
        );
        let permissions = format!(
            "camera=(self{allow}), microphone=(self{allow}), display-capture=(self{allow}), \
             speaker-selection=(self{allow}), geolocation=(), payment=(), usb=()"
        );
        let mut headers = vec![
            (HeaderName::from_static("content-security-policy"), csp),
            (HeaderName::from_static("permissions-policy"), permissions),
            (
                HeaderName::from_static("x-content-type-options"),
                "nosniff".to_owned(),
            ),
            (
                HeaderName::from_static("referrer-policy"),
                "no-referrer".to_owned(),
            ),
        ];
        if https {
            headers.push((
                HeaderName::from_static("strict-transport-security"),
                "max-age=31536000".to_owned(),
            ));
        }
        let headers = headers
            .into_iter()
            .map(|(name, value)| Ok((name, HeaderValue::try_from(value)?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self(headers.into()))
    }
}

/// Middleware: adds the headers to whatever the route answered.
pub async fn add(State(headers): State<SecurityHeaders>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    for (name, value) in headers.0.iter() {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}
