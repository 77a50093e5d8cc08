//! The REST API against a real server: authentication, the one error body with its codes, rooms
//! made, listed and read with the WebSocket clients in them, participants muted and removed,
//! rooms closed and timed out, and tokens minted for `--access token`.

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;
use visavis_protocol::{ErrorCode, RoomMsg, ServerMsg, SessionMsg, PROTOCOL_VERSION};

use super::{Server, TestClient};

const KEY: &str = "vv_clinic";
const SECRET: &str = "0123456789abcdef0123456789abcdef-clinic";

/// A server with the API credentials above and `args`.
async fn server(args: &[&str]) -> Server {
    let mut all = vec!["--no-turn", "--api-key", KEY, "--api-secret", SECRET];
    all.extend_from_slice(args);
    Server::start(&all).await
}

/// An answer of the API: status, headers and the body as JSON (`Null` when empty).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// The answer is the error body with `status` and `code`.
    #[track_caller]
    fn error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.body["error"], code, "{}", self.body);
        let message = self.body["message"].as_str().expect("a message");
        assert!(!message.is_empty());
        assert_eq!(self.body.as_object().map(|o| o.len()), Some(2), "{}", self.body);
    }
}

/// `method path` with `body` (JSON) and `bearer` as the Authorization.
async fn call_as(
    server: &Server,
    bearer: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(bearer) = bearer {
        request = request.header(header::AUTHORIZATION, format!("Bearer {bearer}"));
    }
    let body = match body {
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    send(server, request.body(body).expect("request")).await
}

async fn send(server: &Server, request: Request<Body>) -> Answer {
    let response = server.router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    if !status.is_success() || status == StatusCode::CREATED {
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    }
    Answer {
        status,
        headers,
        body,
    }
}

/// `method path` with the API secret.
async fn call(server: &Server, method: Method, path: &str, body: Option<Value>) -> Answer {
    call_as(server, Some(SECRET), method, path, body).await
}

/// A token from `POST /tokens` with `body`.
async fn mint(server: &Server, body: Value) -> Value {
    let answer = call(server, Method::POST, "/api/v1/tokens", Some(body)).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.body
}

async fn join_with(server: &Server, room: &str, token: Option<&str>, host_key: Option<&str>) -> TestClient {
    let mut client = server.client().await;
    client
        .send(SessionMsg::Join {
            version: PROTOCOL_VERSION,
            room: room.into(),
            name: "Page".into(),
            host_key: host_key.map(Into::into),
            access_token: token.map(Into::into),
        })
        .await;
    client
}

#[tokio::test]
async fn only_the_api_secret_opens_the_api_and_the_document_is_public() {
    let server = server(&["--room-capacity", "8"]).await;
    let answer = call_as(&server, None, Method::GET, "/api/v1/rooms", None).await;
    answer.error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        answer.headers[header::WWW_AUTHENTICATE],
        r#"Bearer realm="visavis""#
    );
    for wrong in ["nope", KEY, &SECRET[1..], &SECRET.replace('0', "1")] {
        let answer = call_as(&server, Some(wrong), Method::POST, "/api/v1/rooms", None).await;
        answer.error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(
            answer.headers[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ASCII")
                .contains("invalid_token"),
            "{wrong}"
        );
    }
    // Basic with the right secret is still not a bearer token.
    let request = Request::get("/api/v1/rooms")
        .header(header::AUTHORIZATION, format!("Basic {SECRET}"))
        .body(Body::empty())
        .expect("request");
    send(&server, request)
        .await
        .error(StatusCode::UNAUTHORIZED, "unauthorized");
    // Nothing was made by all that.
    let rooms = call(&server, Method::GET, "/api/v1/rooms", None).await;
    assert_eq!((rooms.status, rooms.body), (StatusCode::OK, json!({"rooms": []})));
    assert_eq!(rooms.headers[header::CACHE_CONTROL], "no-store");
    // The document needs no secret, and tells this server's room capacity.
    let doc = call_as(&server, None, Method::GET, "/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    assert_eq!(
        doc.body["components"]["schemas"]["CreateRoom"]["properties"]["capacity"]["maximum"],
        8
    );
}

#[tokio::test]
async fn bad_requests_get_the_error_body_with_their_codes() {
    let server = server(&[]).await;
    let rooms = "/api/v1/rooms";
    call(&server, Method::POST, rooms, Some(json!({"name": "a b"})))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_room");
    for body in [
        json!({"capacity": 0}),
        json!({"capacity": 17}),
        json!({"maxDuration": 0}),
        json!({"name": "x", "private": true}),
        json!({"private": false}),
        json!({"name": null}),
        json!({"lobby": "yes"}),
        json!({"colour": "blue"}),
        json!([]),
    ] {
        call(&server, Method::POST, rooms, Some(body))
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    call(&server, Method::POST, rooms, Some(json!({"name": "visit-7"}))).await;
    call(&server, Method::POST, rooms, Some(json!({"name": "visit-7"})))
        .await
        .error(StatusCode::CONFLICT, "room_exists");
    // Not JSON, too big, the wrong method.
    let request = |content_type: &str, body: String| {
        Request::post(rooms)
            .header(header::AUTHORIZATION, format!("Bearer {SECRET}"))
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .expect("request")
    };
    send(&server, request("text/plain", "{}".into()))
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    send(&server, request("application/json", "{".into()))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
    let huge = json!({"name": "x".repeat(70 * 1024)}).to_string();
    send(&server, request("application/json", huge))
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let answer = call(&server, Method::PUT, rooms, None).await;
    answer.error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert!(answer.headers[header::ALLOW]
        .to_str()
        .expect("ASCII")
        .contains("POST"));
    // Rooms and participants that are not there.
    for (method, path) in [
        (Method::GET, "/api/v1/rooms/nowhere"),
        (Method::DELETE, "/api/v1/rooms/nowhere"),
        (Method::DELETE, "/api/v1/rooms/nowhere/participants/1"),
        (Method::POST, "/api/v1/rooms/nowhere/participants/1/mute"),
    ] {
        call(&server, method, path, None)
            .await
            .error(StatusCode::NOT_FOUND, "room_not_found");
    }
    call(
        &server,
        Method::DELETE,
        "/api/v1/rooms/visit-7/participants/42",
        None,
    )
    .await
    .error(StatusCode::NOT_FOUND, "unknown_member");
    for id in ["0", "x", "-1", "9007199254740992"] {
        call(
            &server,
            Method::DELETE,
            &format!("/api/v1/rooms/visit-7/participants/{id}"),
            None,
        )
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
    }
    let tokens = "/api/v1/tokens";
    for (body, code) in [
        (json!({"room": "a/b", "name": "A"}), "invalid_room"),
        (json!({"room": " visit-7", "name": "A"}), "invalid_room"),
        (json!({"room": "visit-7", "name": "  "}), "invalid_name"),
        (json!({"room": "visit-7", "name": "a\u{200b}b"}), "invalid_name"),
        (
            json!({"room": "visit-7", "name": "A", "ttl": 0}),
            "invalid_request",
        ),
        (
            json!({"room": "visit-7", "name": "A", "role": "admin"}),
            "invalid_request",
        ),
        (
            json!({"room": "visit-7", "name": "A", "identity": ""}),
            "invalid_request",
        ),
        (
            json!({"room": "visit-7", "name": "A", "permissions": {"fly": true}}),
            "invalid_request",
        ),
        (json!({"room": "visit-7"}), "invalid_request"),
    ] {
        call(&server, Method::POST, tokens, Some(body.clone()))
            .await
            .error(StatusCode::BAD_REQUEST, code);
    }
    call(&server, Method::POST, tokens, None)
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn a_room_is_made_and_read_with_the_people_in_it() {
    let server = server(&[
        "--access",
        "token",
        "--public-origin",
        "https://consult.example.org",
    ])
    .await;
    let made = call(
        &server,
        Method::POST,
        "/api/v1/rooms",
        Some(json!({"name": "visit-7", "capacity": 4})),
    )
    .await;
    assert_eq!(made.status, StatusCode::CREATED);
    assert_eq!(made.headers[header::LOCATION], "/api/v1/rooms/visit-7");
    let room = &made.body;
    assert_eq!(
        (
            &room["name"],
            &room["private"],
            &room["hosted"],
            &room["lobby"],
            &room["capacity"]
        ),
        (
            &json!("visit-7"),
            &json!(false),
            &json!(true),
            &json!(true),
            &json!(4)
        )
    );
    assert!(room["hostKey"].is_string() && room["endsAt"].is_null());

    // The back end mints a host token for the doctor and a guest token for the patient.
    let doctor_token = mint(
        &server,
        json!({"room": "visit-7", "name": "Dr. Zhang", "role": "host", "identity": "dr-1"}),
    )
    .await;
    let token = doctor_token["token"].as_str().expect("token");
    assert_eq!(
        doctor_token["link"],
        format!("https://consult.example.org/r/visit-7#token={token}")
    );
    assert_eq!(doctor_token["identity"], "dr-1");
    let expires = doctor_token["expiresAt"].as_u64().expect("expiry");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        (now + 7190..=now + 7210).contains(&expires),
        "two hours by default"
    );
    let patient_token = mint(
        &server,
        json!({"room": "visit-7", "name": "Patient Li", "ttl": 600,
               "permissions": {"chat": false}}),
    )
    .await;
    assert!(patient_token["identity"]
        .as_str()
        .expect("made")
        .starts_with("id-"));

    let mut doctor = join_with(&server, "visit-7", Some(token), None).await;
    let doctor_id = expect!(doctor, ServerMsg::Joined { you, .. } if you.host => you.id);
    let mut patient = join_with(&server, "visit-7", patient_token["token"].as_str(), None).await;
    let patient_id = expect!(patient, ServerMsg::Waiting { you, .. } => you.id);
    expect!(doctor, ServerMsg::Knock { .. });

    let room = call(&server, Method::GET, "/api/v1/rooms/visit-7", None).await;
    assert_eq!(room.status, StatusCode::OK);
    assert_eq!(
        room.body["participants"],
        json!([{"id": doctor_id, "name": "Dr. Zhang", "host": true, "identity": "dr-1", "callId": null}])
    );
    assert_eq!(room.body["waiting"][0]["id"], patient_id);
    assert_eq!(room.body["waiting"][0]["name"], "Patient Li");
    let list = call(&server, Method::GET, "/api/v1/rooms", None).await;
    assert_eq!(
        list.body["rooms"],
        json!([{"name": "visit-7", "private": false, "hosted": true, "lobby": true,
                "locked": false, "capacity": 4, "participantCount": 1, "waitingCount": 1,
                "createdAt": room.body["createdAt"], "endsAt": null}])
    );

    // A private room: no name, the id made by the server; its host key lets a host in.
    let open = server_open().await;
    let made = call(&open, Method::POST, "/api/v1/rooms", None).await;
    assert_eq!(made.status, StatusCode::CREATED);
    let id = made.body["name"].as_str().expect("id");
    assert!(
        id.starts_with('~') && made.body["private"] == true,
        "{}",
        made.body
    );
    let mut host = join_with(&open, id, None, made.body["hostKey"].as_str()).await;
    expect!(host, ServerMsg::Joined { you, .. } if you.host);
}

/// A server with `--access open` and the API credentials.
async fn server_open() -> Server {
    server(&[]).await
}

#[tokio::test]
async fn mute_remove_and_close_reach_the_people_in_the_room() {
    let server = server(&["--access", "token"]).await;
    call(
        &server,
        Method::POST,
        "/api/v1/rooms",
        Some(json!({"name": "visit-7"})),
    )
    .await;
    let host = mint(&server, json!({"room": "visit-7", "name": "Dr", "role": "host"})).await;
    let guest = json!({"room": "visit-7", "name": "Li", "identity": "pat-1",
                       "permissions": {"skipLobby": true}});
    let guest = mint(&server, guest).await;
    let mut doctor = join_with(&server, "visit-7", host["token"].as_str(), None).await;
    expect!(doctor, ServerMsg::Joined { .. });
    let mut patient = join_with(&server, "visit-7", guest["token"].as_str(), None).await;
    let id = expect!(patient, ServerMsg::Joined { you, .. } => you.id);
    expect!(doctor, ServerMsg::MemberJoined { .. });
    let participant = format!("/api/v1/rooms/visit-7/participants/{id}");

    let muted = call(&server, Method::POST, &format!("{participant}/mute"), None).await;
    assert_eq!((muted.status, muted.body), (StatusCode::NO_CONTENT, Value::Null));
    // From the back end: no `by`.
    assert_eq!(
        patient.expect_json("mute_request").await,
        json!({"type": "mute_request"})
    );

    let removed = call(&server, Method::DELETE, &participant, None).await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    assert_eq!(
        patient.expect_json("removed").await,
        json!({"type": "removed", "room": "visit-7"})
    );
    assert_eq!(expect!(doctor, ServerMsg::MemberLeft { id } => id), id);
    // The same token, replayed, no longer enters.
    let mut replay = join_with(&server, "visit-7", guest["token"].as_str(), None).await;
    replay.expect_error(ErrorCode::TokenRevoked).await;
    call(&server, Method::DELETE, &participant, None)
        .await
        .error(StatusCode::NOT_FOUND, "unknown_member");

    // Someone waiting, then the room closed: everyone is out and it is gone.
    let late = mint(&server, json!({"room": "visit-7", "name": "Late"})).await;
    let mut late = join_with(&server, "visit-7", late["token"].as_str(), None).await;
    expect!(late, ServerMsg::Waiting { .. });
    expect!(doctor, ServerMsg::Knock { .. });
    let closed = call(&server, Method::DELETE, "/api/v1/rooms/visit-7", None).await;
    assert_eq!(closed.status, StatusCode::NO_CONTENT);
    for client in [&mut doctor, &mut late] {
        assert_eq!(
            client.expect_json("room_ended").await,
            json!({"type": "room_ended", "room": "visit-7"})
        );
    }
    call(&server, Method::GET, "/api/v1/rooms/visit-7", None)
        .await
        .error(StatusCode::NOT_FOUND, "room_not_found");
    assert_eq!(server.counts().await["members"], 0);
    // Out of the room, the doctor's connection may join again.
    doctor.send(RoomMsg::Leave).await;
    doctor.expect_error(ErrorCode::NotJoined).await;
}

#[tokio::test]
async fn a_room_ends_when_its_max_duration_runs_out() {
    let server = server(&[]).await;
    let body = json!({"name": "standup", "lobby": false, "maxDuration": 1});
    let made = call(&server, Method::POST, "/api/v1/rooms", Some(body)).await;
    let ends = made.body["endsAt"].as_u64().expect("an end");
    assert_eq!(ends, made.body["createdAt"].as_u64().expect("made") + 1);
    let mut ann = join_with(&server, "standup", None, None).await;
    expect!(ann, ServerMsg::Joined { .. });
    let started = std::time::Instant::now();
    assert_eq!(
        ann.expect_json("room_ended").await,
        json!({"type": "room_ended", "room": "standup"})
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    call(&server, Method::GET, "/api/v1/rooms/standup", None)
        .await
        .error(StatusCode::NOT_FOUND, "room_not_found");
}

#[tokio::test]
async fn without_credentials_the_api_is_off_and_says_so() {
    // A data directory that cannot be made: a file stands where it would go.
    let blocker = std::env::temp_dir().join(format!("visavis-api-blocker-{}", std::process::id()));
    std::fs::write(&blocker, "").expect("file");
    let data_dir = blocker.join("data");
    let server = Server::start(&["--no-turn", "--data-dir", data_dir.to_str().expect("UTF-8")]).await;
    call_as(&server, Some("anything"), Method::GET, "/api/v1/rooms", None)
        .await
        .error(StatusCode::SERVICE_UNAVAILABLE, "api_unavailable");
    let _ = std::fs::remove_file(&blocker);
}
