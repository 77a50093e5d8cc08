//! The visavis server: HTTP routes, WebSocket sessions and graceful shutdown around the room core.
//!
//! [`run`] serves until its cancellation token fires, then closes every WebSocket with code
//! 1001 and returns once the sessions have ended (at most [`SHUTDOWN_GRACE`]).

mod assets;
mod config;
mod http_error;
mod hub;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use visavis_room::{Config, Core};

pub use config::Settings;
use hub::Hub;

/// How long shutdown waits for sessions to close before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    sessions: TaskTracker,
    shutdown: CancellationToken,
    max_message: usize,
}

/// Serves `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let core = Core::new(Config {
        room_capacity: settings.room_capacity as usize,
        ring_timeout: settings.ring_timeout(),
        ice_servers: Vec::new(),
    });
    let state = AppState {
        hub: Arc::new(Hub::new(core, settings.outbound_queue as usize)),
        sessions: TaskTracker::new(),
        shutdown: shutdown.clone(),
        max_message: settings.max_message_size(),
    };
    let timers = tokio::spawn({
        let (hub, shutdown) = (state.hub.clone(), shutdown.clone());
        async move { hub.run_timers(shutdown).await }
    });
    let sessions = state.sessions.clone();
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    // axum does not wait for upgraded connections; the tracker does.
    sessions.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!("{} sessions did not close in time", sessions.len());
    }
    timers.abort();
    Ok(())
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { assets::file("index.html") }))
        .route(
            "/r/{room}",
            get(|_: Path<String>| async { assets::file("index.html") }),
        )
        .route("/ws", get(ws_upgrade))
        .route("/healthz", get(healthz))
        .fallback(get(|uri: axum::http::Uri| async move {
            assets::file(uri.path().trim_start_matches('/'))
        }))
        .with_state(state)
}

async fn ws_upgrade(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    let AppState {
        hub,
        sessions,
        shutdown,
        max_message,
    } = state;
    // Frames far over the message limit are abuse: tungstenite refuses them and the connection
    // closes. Frames just over it get a `message_too_large` error and the connection lives.
    let hard_cap = max_message.saturating_mul(16);
    upgrade
        .max_message_size(hard_cap)
        .max_frame_size(hard_cap)
        .on_upgrade(move |ws| sessions.track_future(session::serve(ws, hub, shutdown, max_message)))
}

async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let (sessions, counts) = state.hub.counts();
    Json(serde_json::json!({
        "status": "ok",
        "sessions": sessions,
        "members": counts.members,
        "rooms": counts.rooms,
        "calls": counts.calls,
    }))
}
