//! The REST API at `/api/v1`, for a product's back end: make, list, read and close rooms,
//! remove and mute participants, mint access tokens. Callers authenticate with the API secret
//! as a bearer token; requests and answers are JSON, and every error is the one error body
//! (`http_error.rs`). The rules of rooms are the room core's (`visavis_room::api`): this is
//! only the HTTP edge. The OpenAPI 3.1 document, `openapi.json` beside this file, is served at
//! `/api/v1/openapi.json`; docs/api.md explains it with examples.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use visavis_room::{ApiError, Participant, RoomDetail, RoomInfo, RoomOptions};

use crate::http_error::HttpError;
use crate::hub::Hub;
use crate::token::{self, ApiCredentials, Claims, Permissions, Role};

/// Largest request body.
pub const MAX_BODY: usize = 64 * 1024;
/// Longest lifetime of a token minted here, and the default.
const MAX_TTL: u64 = 366 * 86_400;
const DEFAULT_TTL: u64 = 2 * 3600;
/// Longest identity (`sub`) of a token, in characters.
const MAX_IDENTITY_CHARS: usize = 256;
/// Member ids are below 2^53 (exact in JavaScript).
const MAX_MEMBER_ID: u64 = (1 << 53) - 1;

/// The document as written; [`Api::new`] puts this server's room capacity into it.
const OPENAPI: &str = include_str!("openapi.json");

/// What the API's handlers share.
#[derive(Clone)]
pub struct Api {
    hub: Arc<Hub>,
    /// `None` when no pair could be made (a `--data-dir` that cannot be written): the API then
    /// answers 503.
    credentials: Option<Arc<ApiCredentials>>,
    /// Where people open the pages: the start of token links.
    origin: Arc<str>,
    /// The OpenAPI document as served.
    document: Bytes,
    /// This node's cluster: requests about a room go to its node.
    cluster: Option<Arc<crate::cluster::Cluster>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("credentials", &self.credentials.as_ref().map(|c| &c.key))
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl Api {
    pub fn new(
        hub: Arc<Hub>,
        credentials: Option<ApiCredentials>,
        origin: String,
        room_capacity: u32,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            hub,
            credentials: credentials.map(Arc::new),
            origin: origin.into(),
            document: document(room_capacity)?,
            cluster,
        })
    }
}

/// The OpenAPI document with `room_capacity` as the largest capacity a room may ask for.
fn document(room_capacity: u32) -> anyhow::Result<Bytes> {
    let mut doc: serde_json::Value = serde_json::from_str(OPENAPI)?;
    let capacity = doc
        .pointer_mut("/components/schemas/CreateRoom/properties/capacity/maximum")
        .ok_or_else(|| anyhow::anyhow!("openapi.json: no capacity maximum"))?;
    *capacity = room_capacity.into();
    Ok(serde_json::to_vec_pretty(&doc)?.into())
}

/// The API's routes (method, path below `/api/v1`), as the document must list them.
pub const ROUTES: [(&str, &str); 8] = [
    ("get", "/openapi.json"),
    ("get", "/rooms"),
    ("post", "/rooms"),
    ("get", "/rooms/{name}"),
    ("delete", "/rooms/{name}"),
    ("delete", "/rooms/{name}/participants/{id}"),
    ("post", "/rooms/{name}/participants/{id}/mute"),
    ("post", "/tokens"),
];

/// The API's routes, with their state: they merge into any router.
pub fn router<S: Clone + Send + Sync + 'static>(api: Api) -> Router<S> {
    let authenticated = Router::new()
        .route("/api/v1/rooms", get(list_rooms).post(create_room))
        .route("/api/v1/rooms/{name}", get(get_room).delete(close_room))
        .route(
            "/api/v1/rooms/{name}/participants/{id}",
            delete(remove_participant),
        )
        .route(
            "/api/v1/rooms/{name}/participants/{id}/mute",
            post(mute_participant),
        )
        .route("/api/v1/tokens", post(mint_token))
        .route_layer(middleware::from_fn_with_state(api.clone(), in_cluster))
        .route_layer(middleware::from_fn_with_state(api.clone(), authenticate));
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .merge(authenticated)
        .method_not_allowed_fallback(|| async {
            HttpError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "that method is not allowed here (see the Allow header)".into(),
            )
        })
        .layer(middleware::from_fn(no_store))
        .with_state(api)
}

/// In a cluster, a request about a room is served by the room's node (after authentication).
async fn in_cluster(State(api): State<Api>, request: Request, next: Next) -> Response {
    match &api.cluster {
        Some(cluster) => crate::cluster::api::to_room_node(cluster.clone(), request, next).await,
        None => next.run(request).await,
    }
}

/// Answers carry secrets (host keys, tokens): no cache keeps them.
async fn no_store(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Lets through requests whose `Authorization: Bearer` is the API secret. The secret alone
/// authenticates: the key is no secret (it is the `iss` of every token).
async fn authenticate(State(api): State<Api>, request: Request, next: Next) -> Response {
    let Some(credentials) = &api.credentials else {
        let message = "the REST API is off: no API credentials (set --api-key and --api-secret, \
                       or give a --data-dir that can be written)";
        return HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "api_unavailable", message.into())
            .into_response();
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, secret)| secret.trim());
    let (challenge, message) = match given {
        Some(secret) if same_secret(secret, &credentials.secret) => return next.run(request).await,
        Some(_) => (
            r#"Bearer realm="visavis", error="invalid_token""#,
            "the bearer token is not this server's API secret",
        ),
        None => (
            r#"Bearer realm="visavis""#,
            "send the API secret: Authorization: Bearer <secret>",
        ),
    };
    HttpError::new(StatusCode::UNAUTHORIZED, "unauthorized", message.into())
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge))
        .into_response()
}

/// Compares the digests, so that the time taken tells nothing of the secret, not even its
/// length.
pub(crate) fn same_secret(given: &str, secret: &str) -> bool {
    let digest = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let (a, b) = (digest(given), digest(secret));
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

async fn openapi(State(api): State<Api>) -> Response {
    let json = HeaderValue::from_static("application/json");
    ([(header::CONTENT_TYPE, json)], api.document.clone()).into_response()
}

/// `payload_too_large`: a body over [`MAX_BODY`] bytes.
pub(crate) fn body_too_large() -> HttpError {
    HttpError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body is over {MAX_BODY} bytes"),
    )
}

/// A JSON request body of at most [`MAX_BODY`] bytes, with `Content-Type: application/json`;
/// if `OPTIONAL` (as the document says), no body at all is `T::default()`.
struct JsonBody<T, const OPTIONAL: bool = false>(T);

impl<T: DeserializeOwned + Default, S: Send + Sync, const OPTIONAL: bool> FromRequest<S>
    for JsonBody<T, OPTIONAL>
{
    type Rejection = HttpError;

    async fn from_request(request: Request, _: &S) -> Result<Self, HttpError> {
        let headers = request.headers();
        let length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if length.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(body_too_large());
        }
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        let typed = headers.contains_key(header::CONTENT_TYPE);
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY)
            .await
            .map_err(|_| body_too_large())?;
        if bytes.is_empty() && !typed {
            if OPTIONAL {
                return Ok(Self(T::default()));
            }
            return Err(invalid_request("this takes a JSON body".into()));
        }
        if !json {
            return Err(HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send JSON, with Content-Type: application/json".into(),
            ));
        }
        let not_taken = |err| invalid_request(format!("the body is not what this takes: {err}"));
        // Objects only: serde would also read a struct from an array of its fields.
        match serde_json::from_slice(&bytes).map_err(not_taken)? {
            object @ serde_json::Value::Object(_) => {
                serde_json::from_value(object).map(Self).map_err(not_taken)
            }
            _ => Err(invalid_request("the body is a JSON object".into())),
        }
    }
}

fn invalid_request(message: String) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// A field that may be left out but, if given, is not `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The room named in the path.
fn room_name(path: Result<Path<String>, PathRejection>) -> Result<String, HttpError> {
    path.map(|Path(name)| name)
        .map_err(|err| invalid_request(err.body_text()))
}

/// The room and the participant's id named in the path.
fn room_and_member(path: Result<Path<(String, String)>, PathRejection>) -> Result<(String, u64), HttpError> {
    let Path((name, id)) = path.map_err(|err| invalid_request(err.body_text()))?;
    let id = id
        .parse::<u64>()
        .ok()
        .filter(|id| (1..=MAX_MEMBER_ID).contains(id))
        .ok_or_else(|| {
            invalid_request(format!(
                "participant ids are integers from 1 to {MAX_MEMBER_ID}, not {id:?}"
            ))
        })?;
    Ok((name, id))
}

fn refused(err: ApiError) -> HttpError {
    let status = match err {
        ApiError::RoomNotFound(_) | ApiError::UnknownMember(_) => StatusCode::NOT_FOUND,
        ApiError::RoomExists(_) => StatusCode::CONFLICT,
        ApiError::InvalidRoom(_) | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
        ApiError::TooManyRooms(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    HttpError::new(status, err.code(), err.to_string())
}

/// `POST /rooms`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateRoom {
    #[serde(default, deserialize_with = "present")]
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    private: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    lobby: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    capacity: Option<u64>,
    /// Seconds.
    #[serde(default, deserialize_with = "present")]
    max_duration: Option<u64>,
}

/// A room in the list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomSummary {
    name: String,
    private: bool,
    hosted: bool,
    lobby: bool,
    locked: bool,
    capacity: usize,
    participant_count: usize,
    waiting_count: usize,
    created_at: u64,
    ends_at: Option<u64>,
}

impl From<RoomInfo> for RoomSummary {
    fn from(r: RoomInfo) -> Self {
        Self {
            name: r.name,
            private: r.private,
            hosted: r.hosted,
            lobby: r.lobby,
            locked: r.locked,
            capacity: r.capacity,
            participant_count: r.participants,
            waiting_count: r.waiting,
            created_at: r.created_at,
            ends_at: r.ends_at,
        }
    }
}

/// A room with everyone in it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RoomJson {
    #[serde(flatten)]
    summary: RoomSummary,
    host_key: Option<String>,
    participants: Vec<ParticipantJson>,
    waiting: Vec<ParticipantJson>,
}

impl From<RoomDetail> for RoomJson {
    fn from(d: RoomDetail) -> Self {
        let people = |list: Vec<Participant>| list.into_iter().map(ParticipantJson::from).collect();
        Self {
            host_key: d.room.host_key.clone(),
            summary: d.room.into(),
            participants: people(d.participants),
            waiting: people(d.waiting),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ParticipantJson {
    id: u64,
    name: String,
    host: bool,
    identity: Option<String>,
    call_id: Option<u64>,
}

impl From<Participant> for ParticipantJson {
    fn from(p: Participant) -> Self {
        Self {
            id: p.id,
            name: p.name,
            host: p.host,
            identity: p.identity,
            call_id: p.call,
        }
    }
}

#[derive(Debug, Serialize)]
struct RoomList {
    rooms: Vec<RoomSummary>,
}

async fn list_rooms(State(api): State<Api>) -> Json<RoomList> {
    let rooms = api.hub.read(|core| core.rooms());
    Json(RoomList {
        rooms: rooms.into_iter().map(RoomSummary::from).collect(),
    })
}

async fn create_room(
    State(api): State<Api>,
    JsonBody(body): JsonBody<CreateRoom, true>,
) -> Result<Response, HttpError> {
    let options = RoomOptions {
        name: body.name,
        private: body.private,
        lobby: body.lobby.unwrap_or(true),
        capacity: body.capacity.map(|c| usize::try_from(c).unwrap_or(usize::MAX)),
        max_duration: body.max_duration.map(std::time::Duration::from_secs),
    };
    let made = api
        .hub
        .api(|core, now| core.api_create_room(now, options))
        .map_err(refused)?;
    let location = format!("/api/v1/rooms/{}", path_segment(&made.room.name));
    let location = HeaderValue::try_from(location).map_err(|err| internal(&err))?;
    let room = RoomJson::from(made);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(room)).into_response())
}

async fn get_room(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<RoomJson>, HttpError> {
    let name = room_name(path)?;
    api.hub
        .read(|core| core.room(&name))
        .map(|room| Json(room.into()))
        .ok_or_else(|| refused(ApiError::RoomNotFound(name)))
}

async fn close_room(
    State(api): State<Api>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, HttpError> {
    let name = room_name(path)?;
    api.hub
        .api(|core, now| core.api_close(now, &name))
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove_participant(
    State(api): State<Api>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, HttpError> {
    let (name, id) = room_and_member(path)?;
    api.hub
        .api(|core, now| core.api_remove(now, &name, id))
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn mute_participant(
    State(api): State<Api>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<StatusCode, HttpError> {
    let (name, id) = room_and_member(path)?;
    api.hub
        .api(|core, now| core.api_mute(now, &name, id))
        .map_err(refused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MintToken {
    room: String,
    name: String,
    #[serde(default, deserialize_with = "present")]
    role: Option<Role>,
    /// Seconds.
    #[serde(default, deserialize_with = "present")]
    ttl: Option<u64>,
    #[serde(default, deserialize_with = "present")]
    identity: Option<String>,
    #[serde(default, deserialize_with = "present")]
    permissions: Option<PermissionsIn>,
}

/// Permissions as a request gives them: each left out keeps its default.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PermissionsIn {
    #[serde(default, deserialize_with = "present")]
    audio: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    video: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    screen: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    chat: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    skip_lobby: Option<bool>,
}

impl PermissionsIn {
    fn resolve(self) -> Permissions {
        let d = Permissions::default();
        Permissions {
            audio: self.audio.unwrap_or(d.audio),
            video: self.video.unwrap_or(d.video),
            screen: self.screen.unwrap_or(d.screen),
            chat: self.chat.unwrap_or(d.chat),
            skip_lobby: self.skip_lobby.unwrap_or(d.skip_lobby),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Minted {
    token: String,
    link: String,
    identity: String,
    expires_at: u64,
}

async fn mint_token(
    State(api): State<Api>,
    JsonBody(body): JsonBody<MintToken>,
) -> Result<Response, HttpError> {
    let credentials = api
        .credentials
        .as_ref()
        .ok_or_else(|| internal(&"no credentials"))?;
    if visavis_room::validate_room(&body.room) != Ok(body.room.as_str()) {
        let why = visavis_room::validate_room(&body.room)
            .err()
            .unwrap_or("room has whitespace around it");
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_room",
            why.into(),
        ));
    }
    // Counted before trimming too, as the document's maxLength counts.
    let name = if body.name.chars().count() > visavis_room::MAX_NAME_CHARS {
        Err("name is longer than 64 characters")
    } else {
        visavis_room::validate_name(&body.name)
    }
    .map_err(|why| HttpError::new(StatusCode::BAD_REQUEST, "invalid_name", why.into()))?;
    let ttl = body.ttl.unwrap_or(DEFAULT_TTL);
    if !(1..=MAX_TTL).contains(&ttl) {
        return Err(invalid_request(format!("ttl is 1 to {MAX_TTL} seconds")));
    }
    let identity = body
        .identity
        .unwrap_or_else(|| format!("id-{}", crate::random_hex(8)));
    if identity.is_empty() || identity.chars().count() > MAX_IDENTITY_CHARS {
        return Err(invalid_request(format!(
            "identity is 1 to {MAX_IDENTITY_CHARS} characters"
        )));
    }
    let now = visavis_sansio::Now::system().unix_secs();
    let mut claims = Claims::new(
        &credentials.key,
        &identity,
        &body.room,
        &name,
        body.role.unwrap_or(Role::Guest),
        now,
        std::time::Duration::from_secs(ttl),
    );
    claims.permissions = body.permissions.unwrap_or_default().resolve();
    let minted = token::mint(credentials, &claims).map_err(|err| internal(&err))?;
    let answer = Minted {
        link: token::link(&api.origin, &body.room, &minted),
        token: minted,
        identity,
        expires_at: claims.exp,
    };
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

fn internal(err: &dyn std::fmt::Display) -> HttpError {
    tracing::error!("REST API: {err}");
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "something went wrong in the server".into(),
    )
}

/// `s` as one segment of a URL path: every byte but the unreserved ones percent-encoded.
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_and_nothing_else() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .expect("operations")
                    .keys()
                    .filter(|k| *k != "parameters")
                    .map(move |method| (method.clone(), path.clone()))
            })
            .collect();
        documented.sort();
        let mut served: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
        let served = document(8).expect("served");
        let served: serde_json::Value = serde_json::from_slice(&served).expect("JSON");
        assert_eq!(
            served["components"]["schemas"]["CreateRoom"]["properties"]["capacity"]["maximum"],
            8
        );
    }

    #[test]
    fn every_object_schema_names_its_required_properties() {
        // schemathesis quietly adds a required property missing from `properties`, so a name
        // changed in one place only would go unnoticed there.
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("JSON");
        for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
            let properties = schema["properties"].as_object().expect("properties");
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().expect("a name");
                assert!(properties.contains_key(required), "{name}.{required}");
            }
            assert_eq!(schema["additionalProperties"], false, "{name}");
        }
    }

    #[test]
    fn secrets_compare_whole() {
        let secret = "s".repeat(40);
        assert!(same_secret(&secret, &secret));
        assert!(!same_secret(&"s".repeat(39), &secret));
        assert!(!same_secret("", &secret));
        assert!(!same_secret(&format!("{secret}x"), &secret));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(path_segment("visit-7"), "visit-7");
        assert_eq!(path_segment("~q3Zl0fW1bX9e7TtYp2K4aA"), "~q3Zl0fW1bX9e7TtYp2K4aA");
        assert_eq!(path_segment("诊室1"), "%E8%AF%8A%E5%AE%A41");
    }
}
