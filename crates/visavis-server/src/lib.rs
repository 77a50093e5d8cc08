//! The visavis server: HTTP routes, WebSocket sessions and graceful shutdown around the room core.
//!
//! [`run`] serves until its cancellation token fires, then closes every WebSocket with code
//! 1001 and returns once the sessions have ended (at most [`SHUTDOWN_GRACE`]).

mod acme;
mod admission;
pub mod api;
mod assets;
pub mod check;
pub mod cluster;
mod config;
pub mod config_file;
mod connection;
mod fd_budget;
mod headers;
mod http;
mod http_error;
mod hub;
mod ice;
mod metrics;
mod netcheck;
mod per_ip;
mod persist;
mod plain_http;
mod sfu;
mod sfu_tcp;
pub mod sfu_worker;
mod sniff;
mod tls;
pub mod token;
mod turn;
mod webhook;
mod webhook_sender;
mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use visavis_room::{Config, Core, IdSource, SecretSource};
use visavis_signal::{Refusal, Signalling};

use admission::{client_ip, origin_allowed};
pub use config::{Https, LogFormat, Settings, StateKind};
use fd_budget::{FdPool, FdSlot};
use headers::SecurityHeaders;
use http::HttpLimits;
use http_error::HttpError;
use hub::{EventHook, Hub};
pub use token::ApiCredentials;
use turn::Turn;
pub use turn::TurnAddrs;

/// How long shutdown waits for sessions to close before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

#[derive(Clone, Debug)]
struct AppState {
    hub: Arc<Hub>,
    api: api::Api,
    turn: Option<Arc<Turn>>,
    webhooks: Option<Arc<webhook_sender::Webhooks>>,
    sessions: TaskTracker,
    shutdown: CancellationToken,
    /// `--public-origin` and `--allowed-origin` together.
    allowed_origins: Arc<[String]>,
    /// Whether `--public-origin` was given.
    public_origin_configured: bool,
    http_limits: HttpLimits,
    headers: SecurityHeaders,
    /// Where the state is written while serving (`--state file`).
    store: Option<Arc<dyn visavis_store::StateStore>>,
    /// This node's part in a cluster (`--redis`).
    cluster: Option<Arc<cluster::Cluster>>,
    /// The pre-call network check's endpoints.
    netcheck: netcheck::Netcheck,
}

/// Serves `listener` (and the embedded STUN/TURN server, unless off) until `shutdown` is
/// cancelled.
pub async fn run(
    listener: TcpListener,
    settings: Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    App::start(listener, settings, shutdown).await?.serve().await
}

/// A started server: every socket bound (so start-up errors surface here), not yet serving
/// HTTP.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// `--http-listen`, with what it serves.
    plain: Option<(TcpListener, Router)>,
    metrics: Option<TcpListener>,
    state: AppState,
    turn_addrs: Option<TurnAddrs>,
    sfu_addr: Option<SocketAddr>,
}

impl App {
    /// Binds the TURN sockets and builds the state; `serve` then runs it.
    pub async fn start(
        listener: TcpListener,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let tokens = Arc::new(acme::HttpTokens::default());
        let tls = https(&listener, &settings, &tokens, &shutdown)?;
        let plain = match settings.http_listen() {
            None => None,
            Some(_) if tls.is_none() => anyhow::bail!(
                "--http-listen redirects to https, but {} serves plain HTTP",
                listener.local_addr()?
            ),
            Some(addr) => {
                let bound = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (--http-listen)"))?;
                tracing::info!(
                    "plain HTTP on {}: ACME challenges, everything else redirected to https",
                    bound.local_addr()?
                );
                let router = plain_http::router(tokens, listener.local_addr()?.port(), &settings.domains);
                Some((bound, router))
            }
        };
        let metrics = match settings.metrics_listen {
            Some(addr) => Some(metrics::bind(addr).await?),
            None => None,
        };
        let secret = ice::secret(&settings)?;
        let credentials = api_credentials(&settings)?;
        let (http_fds, turn_fds) = fd_budget::split(
            open_file_limit(),
            settings.turn_listen().is_some(),
            settings.max_connections,
        );
        tracing::info!(
            "file descriptors: {http_fds} for HTTP and WebSocket connections, {turn_fds} for TURN"
        );
        // The SFU first: the TURN server lets relayed browsers reach it.
        let sfu = sfu_worker::start(&settings).await?;
        let sfu_handle = sfu.as_ref().map(|s| s.handle.clone());
        let sfu_kept = sfu.as_ref().is_some_and(|s| s.kept);
        let sfu_addr = sfu.as_ref().map(|s| s.local_addr);
        let services: Vec<SocketAddr> = sfu.iter().map(|s| s.public_addr).collect();
        let (turn, turn_addrs, minter) = match settings.turn_listen() {
            Some(listen) => {
                let setup = ice::turn_setup(&settings, listen, &secret, FdPool::new(turn_fds), services)?;
                let (turn, addrs) = Turn::start(setup.clone(), shutdown.clone()).await?;
                tracing::info!(
                    "STUN/TURN on udp+tcp {}{}; relay candidates advertise {} ports {}-{}",
                    addrs.udp,
                    addrs.tls.map(|a| format!(", tls {a}")).unwrap_or_default(),
                    setup.public_ip,
                    setup.relay_ports.0,
                    setup.relay_ports.1,
                );
                // HTTPS carries TURN over TLS too (`sniff`), so a network that lets only TCP
                // to the HTTPS port out still reaches the relay.
                let https_port = tls.is_some().then_some(listener.local_addr()?.port());
                if let Some(port) = https_port {
                    tracing::info!("TURN over TLS on the HTTPS port too ({port})");
                }
                let minter = ice::ice_minter(&settings, &secret, Some((addrs, &setup)), https_port);
                (Some(turn), Some(addrs), minter)
            }
            None => {
                if settings.turn_urls.is_empty() {
                    tracing::info!("STUN/TURN off: clients connect with host candidates only");
                } else {
                    tracing::info!(
                        "handing out external TURN servers: {}",
                        settings.turn_urls.join(", ")
                    );
                }
                (None, None, ice::ice_minter(&settings, &secret, None, None))
            }
        };
        let ice_servers = ice::ice_source(&settings, minter.clone());
        let room_config = Config {
            room_capacity: settings.room_capacity as usize,
            ring_timeout: settings.ring_timeout(),
            ice_servers,
            mesh_limit: settings.mesh_limit as usize,
            group_media: match settings.group_media {
                config::GroupMediaArg::Sfu => visavis_protocol::GroupMedia::Sfu,
                config::GroupMediaArg::Mesh => visavis_protocol::GroupMedia::Mesh,
            },
            group_limit: settings.group_limit as usize,
            chat_history: settings.chat_history as usize,
            chat_max_bytes: 4096,
            max_rooms: settings.max_rooms as usize,
            ids: IdSource::new(|_| random_id()),
            invite_rate: f64::from(settings.invite_rate_limit) / 60.0,
            invite_burst: 5.0,
            sfu_offer_rate: f64::from(settings.sfu_offer_rate) / 60.0,
            sfu_offer_burst: 10.0,
            redial_delay: Duration::from_secs(settings.redial_delay),
            chat_member_rate: f64::from(settings.chat_rate_limit),
            chat_member_burst: 5.0 * f64::from(settings.chat_rate_limit),
            chat_rate: f64::from(settings.room_chat_rate_limit),
            chat_burst: 3.0 * f64::from(settings.room_chat_rate_limit),
            secrets: SecretSource::new(new_secret),
            named_rooms: settings.access == config::Access::Open,
            access_tokens: match settings.access {
                config::Access::Token => {
                    Some(token::check(credentials.clone().context(
                        "--access token needs API credentials: give --api-key and --api-secret",
                    )?))
                }
                _ => None,
            },
            private_room_ttl: Duration::from_secs(3600),
            empty_private_per_ip: 8,
            preconnect: settings.preconnect(),
        };
        if settings.preconnect == config::PreconnectMode::Relay && !room_config.preconnect.enabled() {
            tracing::info!("--preconnect relay needs a TURN server: calls connect once accepted");
        }
        let signal_config = visavis_signal::Config {
            heartbeat: Duration::from_secs(settings.heartbeat_timeout),
            grace: Duration::from_secs(settings.resume_grace),
            log_limit: usize::try_from(settings.resume_log_limit).unwrap_or(usize::MAX),
            log_total: usize::try_from(settings.resume_log_total).unwrap_or(usize::MAX),
            max_message: settings.max_message_size(),
            max_description: settings.max_description_size(),
            rate: f64::from(settings.rate_limit),
            burst: f64::from(settings.rate_burst),
            ip_rate: f64::from(settings.ip_rate_limit),
            ip_burst: f64::from(settings.ip_rate_burst),
            sessions_per_ip: settings.max_sessions_per_ip as usize,
            max_sessions: settings.max_sessions as usize,
            seats_per_ip: settings.max_seats_per_ip as usize,
            join_timeout: Duration::from_secs(settings.join_timeout),
        };
        let cluster_config = cluster_config(&settings, &listener)?;
        // A cluster keeps the rooms' state in Redis, and its tokens name their room.
        let store = match cluster_config {
            Some(_) => None,
            None => open_store(&settings)?,
        };
        let token_source = |clustered: bool| -> visavis_signal::TokenSource {
            if clustered {
                Box::new(|room: &str| cluster::route::token(&new_token(), room))
            } else {
                Box::new(|_: &str| new_token())
            }
        };
        let restored = match &store {
            Some(store) => persist::load(store.as_ref())?,
            None => None,
        };
        let signalling = match restored {
            Some(snapshot) => {
                let now = visavis_sansio::Now::system();
                // An adopted SFU worker still forwards the restored SFU calls; otherwise their
                // participants are told to connect again.
                let core = if sfu_kept {
                    Core::restore_keeping_sfu(room_config, snapshot.core.clone(), now)
                } else {
                    Core::restore(room_config, snapshot.core.clone(), now)
                };
                let sig = Signalling::restore(core, signal_config, token_source(false), snapshot, now);
                // The TURN server relays for members only: those restored are members again.
                if let Some(turn) = &turn {
                    for (member, _) in sig.core().member_ids() {
                        turn.handle_member(visavis_signal::MemberEvent::Joined(member));
                    }
                }
                sig
            }
            None => Signalling::new(
                Core::new(room_config),
                signal_config,
                token_source(cluster_config.is_some()),
            ),
        };
        let webhooks = match (&credentials, settings.webhook_urls.is_empty()) {
            (_, true) => None,
            (Some(credentials), false) => Some(webhook_sender::Webhooks::start(
                settings.webhooks(),
                &credentials.secret,
                &shutdown,
            )?),
            (None, false) => anyhow::bail!(
                "--webhook-url signs its requests with the API secret: give --api-key and \
                 --api-secret, or a --data-dir that can keep the pair made for you"
            ),
        };
        // Room events reach the TURN server (who is a member), the SFU and the webhooks in the
        // order the core made them.
        let on_event = EventHook(Box::new({
            let (turn, webhooks) = (turn.clone(), webhooks.clone());
            move |now, event| {
                if let Some(sfu) = &sfu_handle {
                    sfu.handle_event(event);
                }
                if let visavis_room::Event::CallQuality {
                    room,
                    call_id,
                    member,
                    report,
                } = event
                {
                    // The operator's record of how calls went (the metrics hold the totals).
                    tracing::info!(room, call_id, member, ?report, "call quality");
                }
                if let (Some(turn), Some(member)) = (&turn, event.member()) {
                    turn.handle_member(member);
                }
                if let Some(webhooks) = &webhooks {
                    webhooks.handle_event(now, event);
                }
            }
        }));
        let hub = Arc::new(Hub::new(signalling, settings.outbound_queue as usize, on_event));
        if let Some(sfu) = sfu {
            sfu.spawn(hub.clone(), shutdown.clone());
        }
        let cluster = match cluster_config {
            Some(config) => Some(cluster::Cluster::start(config, hub.clone(), turn.clone()).await?),
            None => None,
        };
        // With `--access token` (which needs credentials, checked above) only a token's
        // holder may relay, in a call or in the network check.
        let netcheck_turn = match (&settings.access, &credentials) {
            (config::Access::Token, Some(credentials)) => netcheck::TurnFor::TokenHolders {
                credentials: credentials.clone(),
                revoked: Arc::new({
                    let hub = hub.clone();
                    move |room: &str, identity: &str| hub.read(|core| core.identity_revoked(room, identity))
                }),
            },
            _ => netcheck::TurnFor::Anyone,
        };
        let state = AppState {
            api: api::Api::new(
                hub.clone(),
                credentials,
                public_origin(&settings),
                settings.room_capacity,
                cluster.clone(),
            )?,
            cluster,
            hub,
            turn,
            webhooks,
            sessions: TaskTracker::new(),
            shutdown,
            allowed_origins: settings
                .public_origins
                .iter()
                .chain(&settings.allowed_origins)
                .cloned()
                .chain(domain_origins(&settings.domains, listener.local_addr()?.port()))
                .collect(),
            public_origin_configured: !settings.public_origins.is_empty(),
            http_limits: HttpLimits {
                header_timeout: Duration::from_secs(settings.http_header_timeout),
                per_ip: settings.max_pending_per_ip as usize,
                trusted_proxies: settings.trusted_proxies.clone().into(),
                fds: FdPool::new(http_fds),
            },
            headers: SecurityHeaders::new(&settings.frame_ancestors, tls.is_some())?,
            store,
            netcheck: netcheck::Netcheck::new(
                minter,
                netcheck_turn,
                settings.netcheck_per_minute,
                settings.netcheck_max_bytes,
                settings.trusted_proxies.clone().into(),
            ),
        };
        Ok(Self {
            listener,
            tls,
            plain,
            metrics,
            state,
            turn_addrs,
            sfu_addr,
        })
    }

    /// Where HTTP and WebSocket connections are served.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The HTTP routes with this app's state, for tests that call them without a socket
    /// (`tower::ServiceExt::oneshot`). `/ws` needs `ConnectInfo<SocketAddr>`
    /// (`axum::extract::connect_info::MockConnectInfo` in such tests).
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// The metrics routes with this app's state (what `--metrics-listen` serves), for tests
    /// that call them without a socket.
    pub fn metrics_router(&self) -> Router {
        metrics::router(
            self.state.hub.clone(),
            self.state.turn.clone(),
            self.state.webhooks.clone(),
        )
    }

    /// Where the embedded TURN server listens, if it runs.
    pub fn turn_addrs(&self) -> Option<TurnAddrs> {
        self.turn_addrs
    }

    /// Where the SFU's socket is bound, if group calls use it.
    pub fn sfu_addr(&self) -> Option<SocketAddr> {
        self.sfu_addr
    }

    /// Serves until the shutdown token is cancelled, then closes every session (code 1001).
    pub async fn serve(self) -> anyhow::Result<()> {
        let Self {
            listener,
            tls,
            plain,
            metrics,
            state,
            ..
        } = self;
        let shutdown = state.shutdown.clone();
        let timers = tokio::spawn({
            let (hub, shutdown) = (state.hub.clone(), shutdown.clone());
            async move { hub.run_timers(shutdown).await }
        });
        let writer = state
            .store
            .clone()
            .map(|store| tokio::spawn(persist::run(state.hub.clone(), store, shutdown.clone())));
        let cluster = state.cluster.clone();
        let cluster_writer = cluster
            .clone()
            .map(|cluster| tokio::spawn(cluster.run(shutdown.clone())));
        let hub = state.hub.clone();
        let sessions = state.sessions.clone();
        let turn = state.turn.clone();
        let limits = state.http_limits.clone();
        if let Some((plain, router)) = plain {
            sessions.spawn(http::serve(
                plain,
                router,
                None,
                None,
                limits.clone(),
                shutdown.clone(),
                sessions.clone(),
            ));
        }
        if let Some(metrics) = metrics {
            let router = metrics::router(state.hub.clone(), turn.clone(), state.webhooks.clone());
            sessions.spawn(http::serve(
                metrics,
                router,
                None,
                None,
                limits.clone(),
                shutdown.clone(),
                sessions.clone(),
            ));
        }
        // HTTP connections and WebSocket sessions are tracked alike; the timer task has told
        // every WebSocket to reconnect and close (`Hub::run_timers`).
        http::serve(
            listener,
            router(state),
            tls.map(tokio_rustls::TlsAcceptor::from),
            turn.clone(),
            limits,
            shutdown,
            sessions.clone(),
        )
        .await;
        sessions.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!("{} sessions did not close in time", sessions.len());
        }
        let _ = timers.await;
        // Every session is detached and no request is in flight: the state written now is
        // complete, and the next process continues it exactly.
        if let Some(writer) = writer {
            if let Ok(mut writer) = writer.await {
                writer.flush(&hub, true).await;
            }
        }
        // A cluster node writes its rooms down complete and hands them over.
        if let (Some(cluster), Some(writer)) = (cluster, cluster_writer) {
            if let Ok(writer) = writer.await {
                cluster.drain(writer).await;
            }
        }
        if let Some(turn) = turn {
            let _ = tokio::time::timeout(Duration::from_secs(1), turn.stopped()).await;
        }
        Ok(())
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(|| async { assets::file("index.html") }))
        .route(
            "/r/{room}",
            get(|_: Path<String>| async { assets::file("index.html") }),
        )
        .route(
            "/sdk/{*path}",
            get(|Path(path): Path<String>| async move { assets::sdk_file(&path) }),
        )
        .route("/ws", get(ws_upgrade))
        .route("/healthz", get(healthz))
        .merge(api::router(state.api.clone()))
        .merge(netcheck::router(state.netcheck.clone()))
        .fallback(get(|uri: axum::http::Uri| async move {
            assets::file(uri.path().trim_start_matches('/'))
        }))
        .layer(axum::middleware::from_fn_with_state(
            state.headers.clone(),
            headers::add,
        ))
        .with_state(state)
}

async fn ws_upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
) -> Response {
    let (response, upgrading) = match websocket::accept(&mut request) {
        Ok(accepted) => accepted,
        Err(err) => return err.into_response(),
    };
    let headers = request.headers();
    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    // Another node of the cluster forwarding a client: it names the client's address.
    let forwarded_for = state.cluster.as_ref().and_then(|cluster| {
        cluster.sent_by_node(headers).then_some(())?;
        let ip = headers.get(cluster::forward::CLIENT_IP_HEADER)?.to_str().ok()?;
        ip.parse::<std::net::IpAddr>().ok()
    });
    if forwarded_for.is_none()
        && !origin_allowed(
            header(header::ORIGIN),
            header(header::HOST),
            &state.allowed_origins,
            state.public_origin_configured,
        )
    {
        let origin = header(header::ORIGIN).unwrap_or_default();
        let message = format!(
            "pages from {origin} may not open sessions here (see --public-origin and --allowed-origin)"
        );
        return HttpError::new(StatusCode::FORBIDDEN, "origin_not_allowed", message).into_response();
    }
    let ip =
        forwarded_for.unwrap_or_else(|| client_ip(peer.ip(), headers, &state.http_limits.trusted_proxies));
    if let Err(refusal) = state.hub.admits(ip) {
        let status = match refusal {
            Refusal::SessionsPerIp(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Sessions(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        return HttpError::new(status, refusal.code(), refusal.to_string()).into_response();
    }
    let AppState {
        hub,
        sessions,
        cluster,
        shutdown,
        ..
    } = state;
    // The socket's descriptor stays counted while the WebSocket lives.
    let fd = request.extensions().get::<Arc<FdSlot>>().cloned();
    // Frames far over the message limit are abuse: tungstenite refuses them and the connection
    // closes. Frames just over it get a `message_too_large` error and the connection lives.
    let hard_cap = hub.frame_cap();
    sessions.spawn(async move {
        if let Some(ws) = upgrading.websocket(hard_cap).await {
            match cluster {
                Some(cluster) => {
                    let forwarded = forwarded_for.is_some();
                    cluster.serve_connection(ws, ip, forwarded, shutdown).await;
                }
                None => connection::serve(ws, hub, ip, None).await,
            }
        }
        drop(fd);
    });
    response
}

/// Says only that the server is up: live counts would let anyone meter activity (they are in
/// the metrics, on `--metrics-listen`).
async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// The TLS configuration for `listener`, if it serves HTTPS (see [`Settings::https`]); until
/// `shutdown`, a certificate from files is watched for changes, and one from ACME renewed
/// (answering HTTP-01 challenges through `tokens`).
fn https(
    listener: &TcpListener,
    settings: &Settings,
    tokens: &Arc<acme::HttpTokens>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Arc<tokio_rustls::rustls::ServerConfig>>> {
    let addr = listener.local_addr()?;
    // One list for every protocol the port speaks (ACME's `acme-tls/1` is added below).
    let mut alpn = vec![sniff::ALPN_HTTP1];
    if settings.turn_listen().is_some() {
        alpn.push(sniff::ALPN_TURN);
    }
    let store = match settings.https(addr.ip()) {
        Https::Off => return Ok(None),
        Https::Files { cert, key } => {
            let store = tls::CertStore::new(tls::load(&cert, &key)?);
            tokio::spawn(tls::watch(store.clone(), cert, key, shutdown.clone()));
            store
        }
        Https::SelfSigned => {
            let names = tls::self_signed_names(addr.ip(), settings.public_ip);
            let (cert, key) = tls::self_signed(&settings.data_dir, &names)?;
            let loaded = tls::load(&cert, &key)?;
            tracing::info!(
                "HTTPS with the self-signed certificate {} (SHA-256 {}): browsers warn once; \
                 for a trusted one use --tls-cert/--tls-key",
                cert.display(),
                tls::fingerprint(&loaded),
            );
            tls::CertStore::new(loaded)
        }
        Https::Acme => {
            let setup = acme::AcmeSetup {
                domains: settings.domains.clone(),
                directory: settings.acme_directory.clone(),
                email: settings.acme_email.clone(),
                ca_root: settings.acme_ca_root.clone(),
                challenge: settings.acme_challenge,
                dir: settings.data_dir.join("acme"),
            };
            let (key, current) = match acme::stored(&setup) {
                Some((key, validity)) => {
                    tracing::info!(
                        "HTTPS with the stored certificate for {}",
                        setup.domains.join(", ")
                    );
                    (key, Some(validity))
                }
                None => {
                    // Until the CA has issued one, connections get a throwaway certificate.
                    let throwaway = rcgen::generate_simple_self_signed(setup.domains.clone())?;
                    let key = tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
                        throwaway.signing_key.serialize_der().into(),
                    );
                    (tls::certified(vec![throwaway.cert.der().clone()], key)?, None)
                }
            };
            let store = tls::CertStore::new(key);
            alpn.push(tls::ACME_TLS_ALPN);
            tokio::spawn(acme::run(
                setup,
                current,
                store.clone(),
                tokens.clone(),
                shutdown.clone(),
            ));
            store
        }
    };
    Ok(Some(tls::server_config(store, &alpn)?))
}

/// The origins of pages served under `--domain` names on `port`: they may open sessions with
/// no `--public-origin` given.
fn domain_origins(domains: &[String], port: u16) -> impl Iterator<Item = String> + '_ {
    let port = if port == 443 {
        String::new()
    } else {
        format!(":{port}")
    };
    domains.iter().map(move |d| format!("https://{d}{port}"))
}

/// The soft limit of open files (the binary raises it to the hard one at start).
fn open_file_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
}

/// A resume token: 128 random bits, hex.
fn new_token() -> String {
    random_hex(16)
}

/// The API credentials of `settings`; a pair made now is shown once, in the log. Without
/// The cluster settings, with `--redis`. The node URL defaults to the listen address, which
/// must then be one the other nodes can reach (not 0.0.0.0); nodes talk plain HTTP to each
/// other (behind a TLS load balancer, give them `--insecure-http`).
fn cluster_config(
    settings: &Settings,
    listener: &TcpListener,
) -> anyhow::Result<Option<cluster::ClusterConfig>> {
    let Some(redis_url) = settings.redis.clone() else {
        return Ok(None);
    };
    let addr = listener.local_addr()?;
    let node_url = match &settings.node_url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None if addr.ip().is_unspecified() => {
            anyhow::bail!("--redis on {addr}: give --node-url, the address the other nodes reach this one at")
        }
        None => format!("http://{addr}"),
    };
    if !node_url.starts_with("http://") {
        anyhow::bail!("--node-url {node_url}: nodes reach each other over plain http:// (their own network)");
    }
    if !matches!(settings.https(addr.ip()), Https::Off) {
        anyhow::bail!(
            "--redis: the nodes of a cluster serve plain HTTP behind the load balancer, which \
             terminates TLS (give --insecure-http)"
        );
    }
    let lease_ttl = Duration::from_millis(settings.lease_ttl_ms);
    let lease_renew = Duration::from_millis(settings.lease_renew_ms);
    if lease_renew * 3 > lease_ttl {
        anyhow::bail!(
            "--lease-renew-ms {} is more than a third of --lease-ttl-ms {}: two failed renewals \
             would lose the rooms",
            settings.lease_renew_ms,
            settings.lease_ttl_ms
        );
    }
    Ok(Some(cluster::ClusterConfig {
        redis_url,
        node_url,
        lease_ttl,
        lease_renew,
        node_heartbeat: Duration::from_millis(settings.node_heartbeat_ms),
        join_timeout: Duration::from_secs(settings.join_timeout),
        max_message: settings.frame_cap(),
    }))
}

/// The state store `--state` asks for: with `file`, `state.redb` in `--data-dir`.
fn open_store(settings: &Settings) -> anyhow::Result<Option<Arc<dyn visavis_store::StateStore>>> {
    match settings.state {
        StateKind::None => Ok(None),
        StateKind::File => {
            let path = settings.data_dir.join("state.redb");
            match visavis_store::FileStore::open(&path) {
                Ok(store) => Ok(Some(Arc::new(store))),
                // Two servers on one file would each lose the other's calls: refuse.
                Err(err @ visavis_store::StoreError::Locked(_)) => Err(anyhow::Error::new(err)
                    .context("give each server a --data-dir of its own, or --state none")),
                // A directory that cannot be written still serves (as the API credentials
                // do), in memory only, and says so: the first command must start anywhere.
                Err(err) => {
                    tracing::warn!(
                        "{err}: state kept in memory only, so a restart ends every call \
                         (give a --data-dir that can be written)"
                    );
                    Ok(None)
                }
            }
        }
    }
}

/// `--api-key`/`--api-secret` and with a `--data-dir` that cannot keep a pair, there are none
/// (and the REST API answers 503); bad ones given are an error.
fn api_credentials(settings: &Settings) -> anyhow::Result<Option<token::ApiCredentials>> {
    let given = settings.api_key.is_some() || settings.api_secret.is_some();
    let (pair, made) = match token::ApiCredentials::load(
        settings.api_key.as_deref(),
        settings.api_secret.as_deref(),
        &settings.data_dir,
    ) {
        Ok(loaded) => loaded,
        Err(err) if !given => {
            tracing::warn!("no API credentials, so the REST API is off: {err:#}");
            return Ok(None);
        }
        Err(err) => return Err(err),
    };
    if made {
        tracing::info!(
            "made API credentials (kept in {}): key {}, secret {}",
            settings.data_dir.join("api-credentials.json").display(),
            pair.key,
            pair.secret
        );
    }
    Ok(Some(pair))
}

/// Where people open this server: the first `--public-origin`, else `https://` and the first
/// `--domain`, else the `--listen` address (`localhost` for an unspecified one).
pub fn public_origin(settings: &Settings) -> String {
    if let Some(origin) = settings.public_origins.first() {
        return origin.trim_end_matches('/').to_owned();
    }
    if let Some(domain) = settings.domains.first() {
        return format!("https://{domain}");
    }
    let listen = settings.listen();
    let scheme = match settings.https(listen.ip()) {
        Https::Off => "http",
        _ => "https",
    };
    if listen.ip().is_unspecified() {
        format!("{scheme}://localhost:{}", listen.port())
    } else {
        format!("{scheme}://{listen}")
    }
}

/// `n` (at most 32) random bytes as hex.
pub fn random_hex(n: usize) -> String {
    random_bytes::<32>()[..n.min(32)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A private room id or host key: 128 random bits as 22 characters of URL-safe base64.
pub(crate) fn new_secret() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = u128::from_le_bytes(random_bytes::<16>());
    // 22 digits of 6 bits hold 132 bits: the top 4 are zero, the 128 below are random.
    (0..22)
        .map(|i| char::from(ALPHABET[((bits >> (6 * i)) & 63) as usize]))
        .collect()
}

/// A member or call id: random, below 2^53 so that JavaScript holds it exactly.
fn random_id() -> u64 {
    u64::from_le_bytes(random_bytes::<8>()) & ((1 << 53) - 1)
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(err) = getrandom::fill(&mut bytes) {
        // Linux always has randomness; should it ever fail, the value is the clock's, which is
        // guessable, so say so loudly rather than fail the join.
        tracing::error!("no randomness ({err}); using the clock");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes();
        for (b, n) in bytes.iter_mut().zip(nanos.iter().cycle()) {
            *b = *n;
        }
    }
    bytes
}
