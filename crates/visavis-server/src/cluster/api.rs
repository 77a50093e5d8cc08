//! The REST API in a cluster: a request about one room (`/api/v1/rooms/{name}…`, and making a
//! room with a name) is served by the room's node — this one, or forwarded there over HTTP with
//! the cluster's secret, as connections are — and the list of rooms gathers every live node's.
//! So a product's back end may send its API calls to any node (its load balancer's choice).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use super::forward::SECRET_HEADER;
use super::{Cluster, Placed};
use crate::api::{body_too_large, MAX_BODY};
use crate::http_error::HttpError;

/// The HTTP client a node reaches the others' APIs with (plain HTTP on `--node-url`).
pub type NodeClient = Client<HttpConnector, Full<Bytes>>;

pub fn node_client() -> NodeClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(super::forward::CONNECT_TIMEOUT));
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Headers a forwarded request and its answer keep.
const KEPT: [header::HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::LOCATION,
    header::ALLOW,
];

/// The API's middleware in a cluster (after authentication): see the module's comment.
pub async fn to_room_node(cluster: Arc<Cluster>, request: Request, next: Next) -> Response {
    // What another node forwarded is served here, never forwarded again.
    if cluster.sent_by_node(request.headers()) {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let named = Path::<HashMap<String, String>>::from_request_parts(&mut parts, &())
        .await
        .ok()
        .and_then(|Path(params)| params.get("name").cloned());
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return body_too_large().into_response();
    };
    let rooms = parts.uri.path() == "/api/v1/rooms";
    // A room made with a name is made where that room would live (or answered there that it
    // exists); one without a name is new, and lives here.
    let named = named.or_else(|| {
        let made = parts.method == Method::POST && rooms;
        made.then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .flatten()
            .and_then(|v| v.get("name")?.as_str().map(str::to_owned))
    });
    let room = named.and_then(|name| visavis_room::validate_room(&name).ok().map(str::to_owned));
    let listing =
        (parts.method == Method::GET && rooms).then(|| parts.headers.get(header::AUTHORIZATION).cloned());
    let request = Request::from_parts(parts, Body::from(body.clone()));
    let Some(room) = room else {
        let local = next.run(request).await;
        return match listing {
            Some(authorization) => with_others(&cluster, local, authorization).await,
            None => local,
        };
    };
    let deadline = Instant::now() + cluster.patience();
    match cluster
        .place(&room, false, deadline, &CancellationToken::new())
        .await
    {
        Placed::Here => next.run(request).await,
        Placed::At { node, url } => {
            let (parts, _) = request.into_parts();
            match forward(&cluster, &url, &parts, body).await {
                Ok(response) => response,
                Err(err) => {
                    tracing::warn!(room, node, "cannot forward an API request: {err:#}");
                    moving()
                }
            }
        }
        Placed::Nowhere => moving(),
    }
}

fn moving() -> Response {
    HttpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "room_moving",
        "the room is moving to another node; try again in a few seconds".into(),
    )
    .into_response()
}

/// `parts` and `body` sent to the node at `url`; its answer.
async fn forward(
    cluster: &Cluster,
    url: &str,
    parts: &axum::http::request::Parts,
    body: Bytes,
) -> anyhow::Result<Response> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(format!("{}{path}", url.trim_end_matches('/')))
        .header(SECRET_HEADER, HeaderValue::from_str(cluster.secret())?);
    for name in KEPT {
        if let Some(value) = parts.headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let answer = cluster.http.request(request.body(Full::new(body))?).await?;
    let (answer, body) = answer.into_parts();
    let body = body.collect().await?.to_bytes();
    let mut response = Response::builder().status(answer.status);
    for name in KEPT {
        if let Some(value) = answer.headers.get(&name) {
            response = response.header(name, value);
        }
    }
    Ok(response.body(Body::from(body))?)
}

/// This node's list of rooms with every other live node's added, asked with the caller's
/// `authorization` (a node that does not answer is left out, and said so in the log).
async fn with_others(cluster: &Cluster, local: Response, authorization: Option<HeaderValue>) -> Response {
    if local.status() != StatusCode::OK {
        return local;
    }
    let (parts, body) = local.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(mut list) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Response::from_parts(parts, Body::from(body));
    };
    let asks = cluster.other_nodes().into_iter().map(|url| {
        let authorization = authorization.clone();
        async move {
            let asked = async {
                let mut request = hyper::Request::get(format!("{}/api/v1/rooms", url.trim_end_matches('/')))
                    .header(SECRET_HEADER, cluster.secret());
                if let Some(authorization) = authorization {
                    request = request.header(header::AUTHORIZATION, authorization);
                }
                let answer = cluster
                    .http
                    .request(request.body(Full::new(Bytes::new()))?)
                    .await?;
                anyhow::ensure!(answer.status() == StatusCode::OK, "{}", answer.status());
                let body = answer.into_body().collect().await?.to_bytes();
                anyhow::Ok(serde_json::from_slice::<serde_json::Value>(&body)?)
            };
            (asked.await, url)
        }
    });
    for (answer, node) in futures_util::future::join_all(asks).await {
        match answer {
            Ok(other) => {
                if let (Some(rooms), Some(more)) = (
                    list.get_mut("rooms").and_then(|r| r.as_array_mut()),
                    other.get("rooms").and_then(|r| r.as_array()),
                ) {
                    rooms.extend(more.iter().cloned());
                }
            }
            Err(err) => tracing::warn!(node, "this node's rooms are missing from the list: {err:#}"),
        }
    }
    let mut response = axum::Json(list).into_response();
    *response.status_mut() = parts.status;
    response
}
