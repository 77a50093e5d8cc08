//! Webhooks against a real HTTP receiver on loopback: the signature verifies with the API
//! secret, a scripted session's events arrive in order with their fields, failed requests are
//! retried and delivered once, and a receiver that is down costs dropped events (counted in the
//! metrics and the log), never the service.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use visavis_protocol::{EndReason, RoomMsg, ServerMsg};

use super::{Server, TestClient, WAIT};

const KEY: &str = "vv_hooks";
const SECRET: &str = "0123456789abcdef0123456789abcdef-hooks";

/// One request the receiver got, and the status it answered.
#[derive(Debug)]
struct Hook {
    headers: HeaderMap,
    body: Value,
    status: StatusCode,
}

/// An HTTP server on loopback that records every request and answers 500 to the first
/// `failures`, 200 after.
struct Receiver {
    url: String,
    requests: mpsc::UnboundedReceiver<Hook>,
}

impl Receiver {
    async fn start(failures: usize) -> Self {
        let (tx, requests) = mpsc::unbounded_channel();
        let failures = Arc::new(AtomicUsize::new(failures));
        let app = axum::Router::new().route(
            "/hooks",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (tx, failures) = (tx.clone(), failures.clone());
                async move {
                    let fail = failures
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok();
                    let status = if fail {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        StatusCode::OK
                    };
                    verify(&headers, &body);
                    let body = serde_json::from_slice(&body).expect("JSON body");
                    let _ = tx.send(Hook {
                        headers,
                        body,
                        status,
                    });
                    status
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, requests }
    }

    async fn next(&mut self) -> Hook {
        tokio::time::timeout(WAIT, self.requests.recv())
            .await
            .expect("a webhook in time")
            .expect("receiver running")
    }

    /// The events delivered (answered 200) until `room_finished`, in the order they came.
    async fn delivered_until_finished(&mut self) -> Vec<Hook> {
        let mut hooks = Vec::new();
        loop {
            let hook = self.next().await;
            if hook.status != StatusCode::OK {
                continue;
            }
            let done = hook.body["event"] == "room_finished";
            hooks.push(hook);
            if done {
                return hooks;
            }
        }
    }
}

/// Checks `Visavis-Signature` as docs/api.md tells receivers to: HMAC-SHA256 of "<t>.<body>"
/// with the API secret, hex, compared in constant time, `t` recent.
fn verify(headers: &HeaderMap, body: &[u8]) {
    let header = headers["visavis-signature"].to_str().expect("ASCII");
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature {header:?}"));
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let signed = [t.as_bytes(), b".", body].concat();
    let tag: Vec<u8> = (0..v1.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&v1[i..i + 2], 16).expect("hex"))
        .collect();
    ring::hmac::verify(&key, &signed, &tag).expect("the signature verifies with the API secret");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let t: u64 = t.parse().expect("t");
    assert!(now.abs_diff(t) < 300, "t={t} is now");
}

async fn server(receiver: &str, args: &[&str]) -> Server {
    let mut all = vec![
        "--no-turn",
        "--api-key",
        KEY,
        "--api-secret",
        SECRET,
        "--webhook-url",
        receiver,
    ];
    all.extend_from_slice(args);
    Server::start(&all).await
}

/// Waits until the metrics have `line`: the receiver has an answer before the server does.
async fn metric_soon(server: &Server, line: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, metrics) = super::get(&server.metrics, "/metrics").await;
        if metrics.lines().any(|l| l == line) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{line} in\n{metrics}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn kinds(hooks: &[Hook]) -> Vec<&str> {
    hooks
        .iter()
        .map(|h| h.body["event"].as_str().unwrap_or("?"))
        .collect()
}

async fn leave(client: &mut TestClient) {
    client.send(RoomMsg::Leave).await;
    next_of!(client, ServerMsg::Left { .. });
}

#[tokio::test]
async fn a_call_makes_signed_events_in_order_with_setup_duration_and_connect_times() {
    let mut receiver = Receiver::start(0).await;
    let server = server(&receiver.url, &[]).await;
    let (mut ann, ann_id) = server.joined("clinic", "Ann").await;
    let (mut bob, bob_id) = server.joined("clinic", "Bob").await;
    ann.send(RoomMsg::Invite { to: bob_id }).await;
    let call_id = next_of!(bob, ServerMsg::Incoming { call_id, .. } => call_id);
    bob.send(RoomMsg::Accept { call_id }).await;
    next_of!(ann, ServerMsg::Accepted { .. });
    next_of!(bob, ServerMsg::Accepted { .. });
    ann.send(RoomMsg::CallConnected { call_id, setup_ms: 5 }).await;
    // A second report from the same side is refused.
    ann.send(RoomMsg::CallConnected { call_id, setup_ms: 6 }).await;
    ann.expect_error(visavis_protocol::ErrorCode::InvalidCallState)
        .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    ann.send(RoomMsg::Hangup { call_id }).await;
    next_of!(ann, ServerMsg::CallEnded { .. });
    next_of!(bob, ServerMsg::CallEnded { .. });
    let report = visavis_protocol::QualityReport {
        path: visavis_protocol::CandidatePath::Host,
        transport: visavis_protocol::MediaTransport::Udp,
        rtt_avg_ms: 1,
        rtt_max_ms: 2,
        loss_avg_permille: 0,
        loss_max_permille: 0,
        freezes: 0,
    };
    bob.send(RoomMsg::CallQuality { call_id, report }).await;
    leave(&mut ann).await;
    leave(&mut bob).await;

    let hooks = receiver.delivered_until_finished().await;
    assert_eq!(
        kinds(&hooks),
        [
            "room_started",
            "participant_joined",
            "participant_joined",
            "call_started",
            "call_ended",
            "call_quality",
            "participant_left",
            "participant_left",
            "room_finished"
        ]
    );
    let mut ids = std::collections::HashSet::new();
    for hook in &hooks {
        let body = &hook.body;
        assert_eq!(body["room"], "clinic", "{body}");
        assert_eq!(hook.headers["content-type"], "application/json");
        assert_eq!(hook.headers["visavis-event-id"], body["id"].as_str().expect("id"));
        assert!(ids.insert(body["id"].to_string()), "ids are unique");
        assert!(body["createdAt"].as_u64().expect("createdAt") > 1_700_000_000_000);
    }
    assert_eq!(hooks[1].body["participant"]["id"], ann_id);
    assert_eq!(hooks[1].body["participant"]["name"], "Ann");
    assert_eq!(hooks[2].body["participant"]["id"], bob_id);
    let started = &hooks[3].body;
    assert_eq!(
        (started["callId"].as_u64(), started["caller"].as_u64()),
        (Some(call_id), Some(ann_id))
    );
    assert!(started["setupMs"].is_u64());
    let ended = &hooks[4].body;
    assert_eq!(
        ended["reason"],
        serde_json::to_value(EndReason::Hangup).expect("reason")
    );
    assert_eq!(ended["by"], ann_id);
    assert_eq!(ended["setupMs"], started["setupMs"]);
    assert!(ended["durationMs"].as_u64().expect("durationMs") >= 20, "{ended}");
    assert_eq!(ended["connectMs"]["caller"], 5);
    assert_eq!(ended["connectMs"]["callee"], Value::Null);
    let quality = &hooks[5].body;
    assert_eq!(
        (quality["callId"].as_u64(), quality["member"].as_u64()),
        (Some(call_id), Some(bob_id))
    );
    assert_eq!(
        (&quality["path"], &quality["transport"], &quality["rttMaxMs"]),
        (&json!("host"), &json!("udp"), &json!(2))
    );
    assert_eq!(hooks[6].body["participant"]["id"], ann_id);

    for line in [
        "visavis_webhooks_delivered_total 9",
        "visavis_webhooks_failed_total 0",
        "visavis_call_connect_seconds_count 1",
    ] {
        metric_soon(&server, line).await;
    }
}

#[tokio::test]
async fn failed_requests_are_retried_and_each_event_is_delivered_once_in_order() {
    let mut receiver = Receiver::start(2).await;
    let server = server(&receiver.url, &["--webhook-backoff-ms", "20"]).await;
    let (mut ann, _) = server.joined("retry", "Ann").await;
    leave(&mut ann).await;
    let mut answered = Vec::new();
    loop {
        let hook = receiver.next().await;
        let done = hook.status == StatusCode::OK && hook.body["event"] == "room_finished";
        answered.push((
            hook.body["event"].as_str().unwrap_or("?").to_owned(),
            hook.status.as_u16(),
            hook.headers["visavis-event-id"]
                .to_str()
                .unwrap_or("?")
                .to_owned(),
        ));
        if done {
            break;
        }
    }
    let shown: Vec<(&str, u16)> = answered.iter().map(|(e, s, _)| (e.as_str(), *s)).collect();
    assert_eq!(
        shown,
        [
            ("room_started", 500),
            ("room_started", 500),
            ("room_started", 200),
            ("participant_joined", 200),
            ("participant_left", 200),
            ("room_finished", 200),
        ],
        "the room's later events wait for its first"
    );
    assert!(
        answered[..3].iter().all(|a| a.2 == answered[0].2),
        "a retry is the same event"
    );
    for line in [
        "visavis_webhooks_delivered_total 4",
        "visavis_webhooks_failed_total 2",
    ] {
        metric_soon(&server, line).await;
    }
    // Nothing more comes: each event was delivered once.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), receiver.requests.recv())
            .await
            .is_err()
    );
}

/// The log of this test's thread, as text (the test runs on one thread, tasks included).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log")).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_receiver_that_is_down_costs_dropped_events_counted_and_logged_not_service() {
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // Nothing listens there: every request is refused at once, and waits a minute to retry.
    let [port] = super::outside::free_ports::<1>();
    let down = format!("http://127.0.0.1:{port}/hooks");
    let server = server(&down, &["--webhook-queue", "3", "--webhook-backoff-ms", "60000"]).await;
    // Five rooms, four events each.
    for room in 0..5 {
        let (mut c, _) = server.joined(&format!("room-{room}"), "Ann").await;
        leave(&mut c).await;
    }
    let (_, metrics) = super::get(&server.metrics, "/metrics").await;
    let dropped = "visavis_webhooks_dropped_total{reason=\"queue_full\"} 17";
    assert!(metrics.lines().any(|l| l == dropped), "{dropped} in\n{metrics}");
    assert!(metrics.lines().any(|l| l == "visavis_webhooks_delivered_total 0"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !log.text().contains("the queue is full") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no drop report in\n{}",
            log.text()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = log.text();
    assert!(
        text.contains(&format!("webhooks to http://127.0.0.1:{port}: dropped")),
        "{text}"
    );
    assert!(text.contains("Connection refused"), "the cause is logged: {text}");
    // Drops are reported together, at most every 10 s: not a line per event.
    assert_eq!(text.matches(": dropped ").count(), 1, "{text}");
    // The server goes on serving.
    let (mut c, _) = server.joined("after", "Bob").await;
    leave(&mut c).await;
    assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
}

#[tokio::test]
async fn bad_webhook_urls_are_refused_at_start() {
    use clap::Parser;
    for bad in ["ftp://a.example/x", "not a url", "https://u:p@a.example/"] {
        let err = visavis_server::Settings::try_parse_from(["visavis", "--webhook-url", bad])
            .expect_err(bad)
            .to_string();
        assert!(err.contains("webhook URL") || err.contains("not a URL"), "{err}");
    }
}
