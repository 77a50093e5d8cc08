//! The plain-HTTP listener beside HTTPS (`--http-listen`; port 80 with `--domain`): answers
//! ACME HTTP-01 challenges and sends everything else to the same path over https.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::acme::HttpTokens;
use crate::http_error::HttpError;

#[derive(Debug, Clone)]
struct Redirect {
    tokens: Arc<HttpTokens>,
    /// The HTTPS port, left out of the URL when it is 443.
    https_port: u16,
    /// `--domain` names: a request for another host goes to the first of them.
    domains: Arc<[String]>,
}

pub fn router(tokens: Arc<HttpTokens>, https_port: u16, domains: &[String]) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(challenge))
        .fallback(redirect)
        .with_state(Redirect {
            tokens,
            https_port,
            domains: domains.into(),
        })
}

async fn challenge(State(state): State<Redirect>, Path(token): Path<String>) -> Response {
    match state.tokens.get(&token) {
        Some(answer) => ([(header::CONTENT_TYPE, "application/octet-stream")], answer).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn redirect(State(state): State<Redirect>, headers: HeaderMap, uri: Uri) -> Response {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(host_without_port);
    let host = match (host, state.domains.first()) {
        (Some(host), None) => host,
        (Some(host), Some(_)) if state.domains.contains(&host) => host,
        (_, Some(domain)) => domain.clone(),
        (None, None) => {
            let message = "this address serves https only; no Host header to redirect with".to_owned();
            return HttpError::new(StatusCode::BAD_REQUEST, "https_only", message).into_response();
        }
    };
    let port = match state.https_port {
        443 => String::new(),
        port => format!(":{port}"),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{host}{port}{path}");
    (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, location)]).into_response()
}

/// The host of a `Host` header, lowercased, if it is a plausible DNS name or IP address.
fn host_without_port(value: &str) -> Option<String> {
    let host = match value.strip_prefix('[') {
        Some(v6) => &value[..v6.find(']')? + 2],
        None => value.rsplit_once(':').map_or(value, |(h, _)| h),
    };
    let plausible = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    plausible.then(|| host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn get(router: &Router, host: &str, path: &str) -> (StatusCode, String) {
        let request = axum::http::Request::get(path)
            .header(header::HOST, host)
            .body(Body::empty())
            .expect("request");
        let response = router.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().expect("ascii").to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (
            status,
            location.unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned()),
        )
    }

    #[tokio::test]
    async fn everything_but_challenges_goes_to_https() {
        let tokens = Arc::new(HttpTokens::default());
        let domains = ["visit.example.com".to_owned()];
        let router = router(tokens.clone(), 443, &domains);
        let moved = get(&router, "visit.example.com", "/r/room-1?x=1").await;
        assert_eq!(
            moved,
            (
                StatusCode::PERMANENT_REDIRECT,
                "https://visit.example.com/r/room-1?x=1".into()
            )
        );
        let other = get(&router, "evil.example:80", "/").await;
        assert_eq!(other.1, "https://visit.example.com/", "only to our own name");

        tokens.set("tok-1", Some("tok-1.thumb".into()));
        assert_eq!(
            get(&router, "visit.example.com", "/.well-known/acme-challenge/tok-1").await,
            (StatusCode::OK, "tok-1.thumb".into())
        );
        let unknown = get(&router, "visit.example.com", "/.well-known/acme-challenge/nope").await;
        assert_eq!(unknown.0, StatusCode::NOT_FOUND);

        let by_address = super::router(tokens, 8443, &[]);
        assert_eq!(
            get(&by_address, "192.0.2.7:8080", "/a").await.1,
            "https://192.0.2.7:8443/a"
        );
        assert_eq!(
            get(&by_address, "[2001:db8::1]:80", "/").await.1,
            "https://[2001:db8::1]:8443/"
        );
        assert_eq!(get(&by_address, "a b", "/").await.0, StatusCode::BAD_REQUEST);
    }
}
