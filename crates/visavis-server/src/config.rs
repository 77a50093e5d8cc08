//! Every setting of the server, with its name, help and default, declared once: [`Settings`].
//! [`crate::config_file::load`] fills it from the command line, the environment and the
//! `--config` file.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use visavis_turn::Cidr;

/// How `--listen` is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Https {
    /// Plain HTTP: on loopback (browsers trust `localhost`), or with `--insecure-http`.
    Off,
    /// HTTPS with `--tls-cert` and `--tls-key`.
    Files { cert: PathBuf, key: PathBuf },
    /// HTTPS with a self-signed certificate kept in `--data-dir`.
    SelfSigned,
    /// HTTPS with certificates from an ACME CA for `--domain`.
    Acme,
}

/// How the log is written (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// How group calls carry media (`--group-media`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GroupMediaArg {
    /// One peer connection from each browser to the SFU in this server.
    Sfu,
    /// A full mesh of peer connections between the browsers.
    Mesh,
}

/// Which rooms people may make (`--access`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Access {
    /// Named rooms (made by whoever joins first) and private rooms.
    Open,
    /// Private rooms only, each made with an unguessable id and run by its hosts.
    Private,
    /// Only holders of an access token (minted with the API secret) for the room.
    Token,
}

/// Where rooms, sessions, calls and chat are kept so that they outlive the process (`--state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StateKind {
    /// In memory only: a restart ends every call.
    None,
    /// A file in --data-dir (state.redb), written every 100 ms while anything changes and at
    /// a graceful stop: a restart, even a crash, keeps the calls.
    File,
}

/// How 1:1 calls connect while they ring (`--preconnect`); `joined.preconnect` tells clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PreconnectMode {
    /// Through the TURN relay only, so the callee's addresses are not revealed before Accept;
    /// after it, ICE may move to a direct path.
    Relay,
    /// With every candidate from the start.
    Direct,
    /// Not at all: the peer connections are made once the call is accepted.
    Off,
}

/// Let's Encrypt's production directory, where `--domain` gets certificates by default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// How the ACME CA is shown that this server answers for `--domain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AcmeChallenge {
    /// A special certificate on the HTTPS port (443): needs only that port open.
    #[value(name = "tls-alpn-01")]
    TlsAlpn01,
    /// A file on the plain-HTTP port (80, `--http-listen`).
    #[value(name = "http-01")]
    Http01,
}

/// visavis: self-hosted audio/video calls in the browser.
///
/// Serves the web app and the WebSocket signalling endpoint `/ws`. Every option can also be
/// set with the environment variable named beside it, or in the --config file under its long
/// name; the command line overrides the environment, which overrides the file.
//
// `Settings::parse()` reads the command line and the environment only;
// `config_file::load` reads the file too.
#[derive(Debug, Clone, Parser)]
#[command(name = "visavis", version, about, long_about)]
pub struct Settings {
    /// A TOML file of settings, keyed by these options' long names: `listen = "0.0.0.0:8443"`,
    /// `no-turn = true`, `frame-ancestors = ["https://a.example"]`. Options on the command line
    /// and environment variables override it.
    #[arg(long, env = "VISAVIS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address and port to serve HTTP and WebSocket on [default: 127.0.0.1:8080, or
    /// 0.0.0.0:443 with --domain].
    #[arg(long, env = "VISAVIS_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Serve HTTPS for this DNS name with certificates obtained and renewed automatically
    /// over ACME (Let's Encrypt unless --acme-directory); repeat for more names. The
    /// account and certificates are kept in --data-dir.
    #[arg(long = "domain", env = "VISAVIS_DOMAIN", value_delimiter = ',',
          value_parser = parse_domain, conflicts_with_all = ["tls_cert", "insecure_http"])]
    pub domains: Vec<String>,

    /// The ACME directory to get certificates from.
    #[arg(long, env = "VISAVIS_ACME_DIRECTORY", default_value = LETS_ENCRYPT)]
    pub acme_directory: String,

    /// Contact address given to the ACME CA (for expiry warnings).
    #[arg(long, env = "VISAVIS_ACME_EMAIL")]
    pub acme_email: Option<String>,

    /// A CA certificate (PEM) to trust for the ACME directory's HTTPS, besides the system's
    /// (a test CA such as pebble's).
    #[arg(long, env = "VISAVIS_ACME_CA_ROOT")]
    pub acme_ca_root: Option<PathBuf>,

    /// How to prove control of --domain to the ACME CA.
    #[arg(
        long,
        env = "VISAVIS_ACME_CHALLENGE",
        value_enum,
        default_value = "tls-alpn-01"
    )]
    pub acme_challenge: AcmeChallenge,

    /// Also serve plain HTTP here: ACME HTTP-01 challenges, and a redirect to https for
    /// everything else [default with --domain: 0.0.0.0:80].
    #[arg(long, env = "VISAVIS_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,

    /// Certificate chain (PEM) to serve HTTPS with; reloaded when the file changes or on
    /// SIGHUP. Needs --tls-key.
    #[arg(long, env = "VISAVIS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "VISAVIS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve plain HTTP on a non-loopback --listen address (behind a TLS reverse proxy).
    /// Without it, and without --tls-cert, such an address serves HTTPS with a self-signed
    /// certificate: browsers give the camera only to https pages (or localhost).
    #[arg(long, env = "VISAVIS_INSECURE_HTTP")]
    pub insecure_http: bool,

    /// Where visavis keeps what must outlive a run (the state file, the self-signed
    /// certificate, the API credentials).
    #[arg(long, env = "VISAVIS_DATA_DIR", default_value = "visavis-data")]
    pub data_dir: PathBuf,

    /// Where rooms, sessions, calls and chat are kept so that a restart keeps every call:
    /// `file`, in --data-dir/state.redb (a crash loses at most the last 100 ms or so, a
    /// graceful stop nothing); `none`, in memory only (a restart ends every call).
    #[arg(long, env = "VISAVIS_STATE", value_enum, default_value = "file")]
    pub state: StateKind,

    /// Run as one node of a cluster sharing rooms through this Redis (`redis://host:6379/0`):
    /// the rooms' state is kept there (instead of --state), each room lives on one node, and a
    /// node that dies or stops hands its rooms to the others. See docs/scaling.md.
    #[arg(long, env = "VISAVIS_REDIS")]
    pub redis: Option<String>,

    /// With --redis: where the other nodes reach this one (`http://10.0.0.5:8080`); by
    /// default the --listen address, if it is a specific one.
    #[arg(long, env = "VISAVIS_NODE_URL", requires = "redis")]
    pub node_url: Option<String>,

    /// With --redis: milliseconds a room's lease lasts without renewal, so how long the rooms
    /// of a node that died wait before another node takes them over.
    #[arg(long, env = "VISAVIS_LEASE_TTL_MS", default_value_t = 3000,
          value_parser = clap::value_parser!(u64).range(300..=600_000))]
    pub lease_ttl_ms: u64,

    /// With --redis: milliseconds between lease renewals (at most a third of --lease-ttl-ms,
    /// so that two can fail before a lease runs out).
    #[arg(long, env = "VISAVIS_LEASE_RENEW_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=200_000))]
    pub lease_renew_ms: u64,

    /// With --redis: milliseconds between a node's heartbeats in the node registry; a node
    /// silent for three counts as dead (and is no longer forwarded to).
    #[arg(long, env = "VISAVIS_NODE_HEARTBEAT_MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(100..=60_000))]
    pub node_heartbeat_ms: u64,

    /// Most members one room may hold; one more gets a `room_full` error.
    #[arg(long, env = "VISAVIS_ROOM_CAPACITY", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub room_capacity: u32,

    /// Seconds an invite rings before it ends as "no answer".
    #[arg(long, env = "VISAVIS_RING_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ring_timeout: u64,

    /// Whether 1:1 calls set up their peer connection (ICE and DTLS, no media) while they
    /// ring, so media starts as soon as the callee accepts: `relay`, through the TURN relay
    /// only (the callee's addresses stay hidden until Accept; `off` when no TURN server is
    /// handed out); `direct`, with every candidate; `off`, only once the call is accepted.
    #[arg(long, env = "VISAVIS_PRECONNECT", value_enum, default_value = "relay")]
    pub preconnect: PreconnectMode,

    /// Most people in a room's group call (a full mesh of peer connections); one more gets a
    /// `call_full` error.
    #[arg(long, env = "VISAVIS_MESH_LIMIT", default_value_t = 6,
          value_parser = clap::value_parser!(u32).range(2..=50))]
    pub mesh_limit: u32,

    /// How a room's group call carries media: `sfu`, one peer connection from each browser to
    /// the SFU built into this server (which forwards), or `mesh`, every browser to every other
    /// (for servers that cannot open a UDP port). 1:1 calls are peer to peer either way.
    #[arg(
        long,
        env = "VISAVIS_GROUP_MEDIA",
        value_enum,
        default_value = "sfu",
        help_heading = "SFU"
    )]
    pub group_media: GroupMediaArg,

    /// Most people in a group call through the SFU; one more gets `call_full`.
    #[arg(long, env = "VISAVIS_GROUP_LIMIT", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(2..=1000), help_heading = "SFU")]
    pub group_limit: u32,

    /// UDP address of the SFU (its one ICE candidate, ICE-lite). Default: the IP of --listen,
    /// port 3479 (port 0, any free one, when --listen's port is 0).
    #[arg(long, env = "VISAVIS_SFU_LISTEN", help_heading = "SFU")]
    pub sfu_listen: Option<SocketAddr>,

    /// Run the SFU inside this process. By default it runs in a worker process of its own
    /// (with --state file, on a single node), which keeps forwarding while visavis restarts
    /// and is adopted by the next process: group calls through the SFU go on without a gap.
    #[arg(long, env = "VISAVIS_SFU_IN_PROCESS", help_heading = "SFU")]
    pub sfu_in_process: bool,

    /// The binary the SFU worker is started from: the `visavis` binary sets it to itself.
    #[arg(skip)]
    pub sfu_worker_exe: Option<PathBuf>,

    /// Most peer connections the SFU holds at once; an offer beyond gets `sfu_unavailable`.
    #[arg(long, env = "VISAVIS_SFU_MAX_SESSIONS", default_value_t = visavis_sfu::DEFAULT_MAX_SESSIONS,
          value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = "SFU")]
    pub sfu_max_sessions: u32,

    /// Seconds without a datagram from a browser after which the SFU drops its session.
    #[arg(long, env = "VISAVIS_SFU_IDLE_TIMEOUT", default_value_t = visavis_sfu::DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(2..=3600), help_heading = "SFU")]
    pub sfu_idle_timeout: u64,

    /// Cameras the SFU forwards to each participant: those of the most recent speakers (the
    /// others' tiles show their name). Microphones and shared screens always go through.
    #[arg(long, env = "VISAVIS_SFU_LAST_N", default_value_t = visavis_sfu::DEFAULT_LAST_N,
          value_parser = clap::value_parser!(u32).range(1..=1000), help_heading = "SFU")]
    pub sfu_last_n: u32,
    /// ICE-TCP connections to the SFU (on --sfu-listen's port number, for browsers whose UDP
    /// is blocked) one client address may hold; more are closed at once. 0 turns ICE-TCP off.
    #[arg(long, env = "VISAVIS_SFU_TCP_PER_IP", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(0..=100_000), help_heading = "SFU")]
    pub sfu_tcp_per_ip: u32,

    /// ICE-TCP connections to the SFU in all; more are closed at once.
    #[arg(long, env = "VISAVIS_SFU_TCP_MAX", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000), help_heading = "SFU")]
    pub sfu_tcp_max: u32,

    /// Offers to the SFU one member may send per minute (in bursts of up to 10): each starts
    /// its session over and renegotiates the others'. More get `rate_limited`.
    #[arg(long, env = "VISAVIS_SFU_OFFER_RATE", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = "SFU")]
    pub sfu_offer_rate: u32,

    /// Chat messages each room keeps and sends to people who join.
    #[arg(long, env = "VISAVIS_CHAT_HISTORY", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub chat_history: u32,

    /// Largest signalling message accepted, in bytes (but for descriptions); larger ones get a
    /// `message_too_large` error. Frames over 16 times this close the connection.
    #[arg(long, env = "VISAVIS_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=16 * 1024 * 1024))]
    pub max_message_size: u64,

    /// Largest SDP description (`description`, `sfu_description`) accepted, in bytes: an SFU
    /// call's grows with the room, by about a kilobyte per forwarded track (150 tracks at
    /// `--group-limit 50`).
    #[arg(long, env = "VISAVIS_MAX_DESCRIPTION_SIZE", default_value_t = 512 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=16 * 1024 * 1024))]
    pub max_description_size: u64,

    /// Seconds without any message from a client (or, on the client, from the server) before
    /// its connection counts as dropped. Pings go out every third of it.
    #[arg(long, env = "VISAVIS_HEARTBEAT_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(2..=600))]
    pub heartbeat_timeout: u64,

    /// Seconds a member whose connection dropped stays in its room (shown as reconnecting)
    /// waiting to resume, before it leaves.
    #[arg(long, env = "VISAVIS_RESUME_GRACE", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub resume_grace: u64,

    /// Messages per second one connection may send; more get a `rate_limited` error.
    #[arg(long, env = "VISAVIS_RATE_LIMIT", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_limit: u32,

    /// Messages one connection may send in a burst above --rate-limit.
    #[arg(long, env = "VISAVIS_RATE_BURST", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate_burst: u32,

    /// Messages per second one client address may send, all its connections together; more
    /// get a `rate_limited` error.
    #[arg(long, env = "VISAVIS_IP_RATE_LIMIT", default_value_t = 400,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ip_rate_limit: u32,

    /// Messages one client address may send in a burst above --ip-rate-limit.
    #[arg(long, env = "VISAVIS_IP_RATE_BURST", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub ip_rate_burst: u32,

    /// Sessions one client address may hold: open connections plus members waiting to
    /// reconnect; more get HTTP 429 `too_many_sessions`.
    #[arg(long, alias = "max-connections-per-ip", env = "VISAVIS_MAX_SESSIONS_PER_IP", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_sessions_per_ip: u32,

    /// Sessions the server holds in all; more get HTTP 503 `server_full`.
    #[arg(long, env = "VISAVIS_MAX_SESSIONS", default_value_t = 16_384,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_sessions: u32,

    /// Members one client address may have in one room (reconnecting ones included);
    /// one more gets `too_many_seats`.
    #[arg(long, env = "VISAVIS_MAX_SEATS_PER_IP", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_seats_per_ip: u32,

    /// Seconds a client may take to send a request's headers (the first, or the next on a
    /// kept-alive connection) before the connection is closed.
    #[arg(long, env = "VISAVIS_HTTP_HEADER_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub http_header_timeout: u64,

    /// Requests to the pre-call network check (`/netcheck/*`: TURN credentials for a minute,
    /// download and upload bodies) one client address may make per minute; 0 turns the
    /// check's endpoints off (`netcheck_off`).
    #[arg(long, env = "VISAVIS_NETCHECK_PER_MINUTE", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub netcheck_per_minute: u32,

    /// Largest body the network check downloads or uploads, in bytes (`netcheck_too_large`).
    #[arg(long, env = "VISAVIS_NETCHECK_MAX_BYTES", default_value_t = 1_048_576,
          value_parser = clap::value_parser!(u64).range(1024..=16 * 1_048_576))]
    pub netcheck_max_bytes: u64,

    /// HTTP connections one client address may hold that are not WebSockets (yet); more are
    /// closed at once.
    #[arg(long, env = "VISAVIS_MAX_PENDING_PER_IP", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_pending_per_ip: u32,

    /// HTTP and WebSocket connections held at once, all together; more get HTTP 503
    /// `server_full` [default: three quarters of the open-file limit after 64 spare, the rest
    /// being the embedded TURN server's; all of it without TURN].
    #[arg(long, env = "VISAVIS_MAX_CONNECTIONS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,

    /// An origin whose pages may embed visavis in a frame and give it the camera and
    /// microphone (e.g. `https://clinic.example.org`); repeatable. By default only visavis's
    /// own pages may frame it.
    #[arg(
        long = "frame-ancestors",
        env = "VISAVIS_FRAME_ANCESTORS",
        value_delimiter = ','
    )]
    pub frame_ancestors: Vec<String>,

    /// Address to serve Prometheus metrics on (`/metrics`, and `/healthz`); off unless given.
    /// Keep it private: the counts tell how busy the server is.
    #[arg(long, env = "VISAVIS_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Seconds a connection may stay open without joining a room (or resuming); then it is
    /// closed (1008).
    #[arg(long, env = "VISAVIS_JOIN_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub join_timeout: u64,

    /// Bytes of messages kept for one session until its client acknowledges them (for replay
    /// after a reconnect); a client further behind is disconnected (1008).
    #[arg(long, env = "VISAVIS_RESUME_LOG_LIMIT", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(64 * 1024..=1024 * 1024 * 1024))]
    pub resume_log_limit: u64,

    /// Bytes of such messages kept for all sessions together.
    #[arg(long, env = "VISAVIS_RESUME_LOG_TOTAL", default_value_t = 512 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024 * 1024..=64 * 1024 * 1024 * 1024))]
    pub resume_log_total: u64,

    /// Calls one member may start per minute (in bursts of up to 5); more get `rate_limited`.
    #[arg(long, env = "VISAVIS_INVITE_RATE_LIMIT", default_value_t = 12,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub invite_rate_limit: u32,

    /// Seconds after a declined call before the caller may ring the same member again.
    #[arg(long, env = "VISAVIS_REDIAL_DELAY", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub redial_delay: u64,

    /// Chat messages one member may send per second (in bursts of five times that); more get
    /// `rate_limited`.
    #[arg(long, env = "VISAVIS_CHAT_RATE_LIMIT", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub chat_rate_limit: u32,

    /// Chat messages one room takes per second from everyone together (in bursts of three
    /// times that); more get `rate_limited`, so a flood never fills the readers' connections.
    #[arg(long, env = "VISAVIS_ROOM_CHAT_RATE_LIMIT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub room_chat_rate_limit: u32,

    /// Rooms the server holds at once; joining a new room beyond it gets `too_many_rooms`.
    #[arg(long, env = "VISAVIS_MAX_ROOMS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_rooms: u32,

    /// Who may make rooms: `open`, anyone who names one (and private rooms); `private`,
    /// private rooms only (`join` of a named room gets `private_only`); `token`, only holders
    /// of an access token for the room (`visavis token`, minted with --api-secret).
    #[arg(long, env = "VISAVIS_ACCESS", value_enum, default_value = "open")]
    pub access: Access,

    /// The API key: the issuer of access tokens. With --api-secret; if neither is set, a pair
    /// is made once and kept in --data-dir.
    #[arg(long, env = "VISAVIS_API_KEY", requires = "api_secret")]
    pub api_key: Option<String>,

    /// The API secret that signs access tokens (HS256), at least 32 characters.
    #[arg(
        long,
        env = "VISAVIS_API_SECRET",
        requires = "api_key",
        hide_env_values = true
    )]
    pub api_secret: Option<String>,

    /// How the log is written: `text` for people, `json` (one object a line) for collectors.
    #[arg(long, env = "VISAVIS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Web origins (besides the server's own) whose pages may open sessions, e.g.
    /// https://app.example.org; repeatable. Browsers send Origin; other clients need not.
    #[arg(
        long = "allowed-origin",
        env = "VISAVIS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// The origins people open this server's pages under, e.g. https://consult.example.org;
    /// repeatable. Without it, only pages opened by IP address or as localhost may open
    /// sessions: a domain name must be listed (else a site whose name an attacker re-points to
    /// this server could open sessions from visitors' browsers).
    #[arg(long = "public-origin", env = "VISAVIS_PUBLIC_ORIGINS", value_delimiter = ',')]
    pub public_origins: Vec<String>,

    /// Reverse proxies (address or range, e.g. 10.0.0.0/8; repeatable) whose
    /// X-Forwarded-For / Forwarded headers name the client. From anyone else those headers are
    /// ignored, and every per-address limit applies to the TCP peer.
    #[arg(
        long = "trusted-proxy",
        env = "VISAVIS_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<Cidr>,

    /// A URL that receives every room event as a signed JSON POST (webhooks; see
    /// docs/api.md); repeatable. http:// or https://. Signed with the API secret.
    #[arg(long = "webhook-url", env = "VISAVIS_WEBHOOK_URLS", value_delimiter = ',',
          value_parser = parse_webhook_url, help_heading = "Webhooks")]
    pub webhook_urls: Vec<String>,

    /// Webhook events held per URL (waiting, or waiting to be retried); when full, the oldest
    /// waiting event is dropped for the new one.
    #[arg(long, env = "VISAVIS_WEBHOOK_QUEUE", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000), help_heading = "Webhooks")]
    pub webhook_queue: u32,

    /// Attempts to deliver one webhook event before it is dropped.
    #[arg(long, env = "VISAVIS_WEBHOOK_ATTEMPTS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100), help_heading = "Webhooks")]
    pub webhook_attempts: u32,

    /// Milliseconds before the first retry of a webhook; each next retry waits twice as long,
    /// up to a minute.
    #[arg(long, env = "VISAVIS_WEBHOOK_BACKOFF_MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..=60_000), help_heading = "Webhooks")]
    pub webhook_backoff_ms: u64,

    /// Seconds one webhook request may take (connecting included) before it counts as failed.
    #[arg(long, env = "VISAVIS_WEBHOOK_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300), help_heading = "Webhooks")]
    pub webhook_timeout: u64,

    /// Messages queued for one slow client before it is disconnected (close code 1008).
    #[arg(long, env = "VISAVIS_OUTBOUND_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(8..=65_536))]
    pub outbound_queue: u32,

    /// Address of the embedded STUN/TURN server (UDP and TCP). Default: the IP of --listen,
    /// port 3478.
    #[arg(long, env = "VISAVIS_TURN_LISTEN", help_heading = "STUN/TURN")]
    pub turn_listen: Option<SocketAddr>,

    /// Turn the embedded STUN/TURN server off (clients then get only --turn-url servers).
    #[arg(long, env = "VISAVIS_NO_TURN", help_heading = "STUN/TURN")]
    pub no_turn: bool,

    /// The address relay candidates advertise: this machine's public IP. Default: the IP of
    /// --turn-listen, or the machine's outbound address when that is unspecified (0.0.0.0).
    #[arg(long, env = "VISAVIS_PUBLIC_IP", help_heading = "STUN/TURN")]
    pub public_ip: Option<IpAddr>,

    /// Host name put in the stun:/turn: URLs given to browsers (needed for turns: with a
    /// certificate), and in the turns: URL of the HTTPS port unless an https --public-origin
    /// or a --domain names that. Default: the public IP.
    #[arg(long, env = "VISAVIS_TURN_HOST", help_heading = "STUN/TURN")]
    pub turn_host: Option<String>,

    /// Shared secret of the TURN REST credentials (coturn's static-auth-secret). Default: a
    /// random secret made at start.
    #[arg(
        long,
        env = "VISAVIS_TURN_SECRET",
        hide_env_values = true,
        help_heading = "STUN/TURN"
    )]
    pub turn_secret: Option<String>,

    /// An external TURN server (e.g. coturn with use-auth-secret) to hand out instead of the
    /// embedded one; repeatable; needs --turn-secret. Example: turn:turn.example.org:3478?transport=udp
    #[arg(
        long = "turn-url",
        env = "VISAVIS_TURN_URLS",
        value_delimiter = ',',
        help_heading = "STUN/TURN"
    )]
    pub turn_urls: Vec<String>,

    /// Seconds a TURN credential stays valid for new allocations; members get fresh ones over
    /// signalling every half of it while they stay [default: 600 for the embedded server,
    /// whose relays end when the member leaves; 43200 for a --turn-url server, which refuses
    /// to refresh a relay once its credential has expired].
    #[arg(long, env = "VISAVIS_TURN_CREDENTIAL_LIFETIME",
          value_parser = clap::value_parser!(u64).range(10..=7 * 24 * 3600), help_heading = "STUN/TURN")]
    pub turn_credential_lifetime: Option<u64>,

    /// UDP ports relays are bound on, LOW-HIGH; keep them clear of the kernel's ephemeral
    /// ports (/proc/sys/net/ipv4/ip_local_port_range).
    #[arg(long, env = "VISAVIS_TURN_RELAY_PORTS", default_value = "61000-65535", value_parser = parse_port_range,
          help_heading = "STUN/TURN")]
    pub turn_relay_ports: (u16, u16),

    /// Open a peer address range that the relay refuses by default (private, loopback, ...),
    /// as CIDR; repeatable. Example: 10.0.0.0/8
    #[arg(
        long = "turn-allow-peer",
        env = "VISAVIS_TURN_ALLOW_PEERS",
        value_delimiter = ',',
        help_heading = "STUN/TURN"
    )]
    pub turn_allow_peers: Vec<Cidr>,

    /// Relay allocations one user may hold at once.
    #[arg(
        long,
        env = "VISAVIS_TURN_USER_QUOTA",
        default_value_t = 16,
        help_heading = "STUN/TURN"
    )]
    pub turn_user_quota: usize,

    /// Relay allocations the server holds at most.
    #[arg(
        long,
        env = "VISAVIS_TURN_TOTAL_QUOTA",
        default_value_t = 4000,
        help_heading = "STUN/TURN"
    )]
    pub turn_total_quota: usize,

    /// Relay allocations the clients of one IP address may hold, whatever credentials they
    /// present; more get 486.
    #[arg(
        long,
        env = "VISAVIS_TURN_IP_QUOTA",
        default_value_t = 32,
        help_heading = "STUN/TURN"
    )]
    pub turn_ip_quota: usize,

    /// Permissions (peer addresses), and channels, one allocation may hold; more get 508.
    #[arg(
        long,
        env = "VISAVIS_TURN_MAX_PERMISSIONS",
        default_value_t = 128,
        help_heading = "STUN/TURN"
    )]
    pub turn_max_permissions: usize,

    /// Longest allocation lifetime granted, in seconds (clients refresh before it ends).
    #[arg(long, env = "VISAVIS_TURN_MAX_LIFETIME", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(600..=86_400), help_heading = "STUN/TURN")]
    pub turn_max_lifetime: u64,

    /// Most kilobits per second one allocation may relay (both directions); excess is dropped.
    #[arg(
        long,
        env = "VISAVIS_TURN_BANDWIDTH",
        default_value_t = 10_000,
        help_heading = "STUN/TURN"
    )]
    pub turn_bandwidth: u64,

    /// Seconds a TURN client over TCP or TLS may send nothing before it is disconnected.
    #[arg(long, env = "VISAVIS_TURN_TCP_IDLE_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600), help_heading = "STUN/TURN")]
    pub turn_tcp_idle_timeout: u64,

    /// Bytes queued for one TURN client over TCP or TLS before it is disconnected as not
    /// reading.
    #[arg(long, env = "VISAVIS_TURN_TCP_OUTBOX", default_value_t = 256 * 1024,
          value_parser = clap::value_parser!(u64).range(4096..=64 * 1024 * 1024), help_heading = "STUN/TURN")]
    pub turn_tcp_outbox: u64,

    /// TURN TCP and TLS connections one client address may hold; more are closed at once.
    #[arg(long, env = "VISAVIS_TURN_TCP_PER_IP", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = "STUN/TURN")]
    pub turn_tcp_per_ip: u32,

    /// Unauthenticated or failing TURN requests answered per second per client IP (twice as
    /// many in a burst); beyond that they are dropped unanswered. Every allocation starts with
    /// one (the 401 challenge), so many people behind one NAT need some headroom.
    #[arg(long, env = "VISAVIS_TURN_UNAUTH_RATE", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=100_000), help_heading = "STUN/TURN")]
    pub turn_unauth_rate: u32,

    /// Realm of the TURN long-term credentials.
    #[arg(
        long,
        env = "VISAVIS_TURN_REALM",
        default_value = "visavis",
        help_heading = "STUN/TURN"
    )]
    pub turn_realm: String,

    /// PEM certificate chain for TURN over TLS (turns:), with --turn-tls-key.
    #[arg(
        long,
        env = "VISAVIS_TURN_TLS_CERT",
        requires = "turn_tls_key",
        help_heading = "STUN/TURN"
    )]
    pub turn_tls_cert: Option<PathBuf>,

    /// PEM private key for TURN over TLS.
    #[arg(
        long,
        env = "VISAVIS_TURN_TLS_KEY",
        requires = "turn_tls_cert",
        help_heading = "STUN/TURN"
    )]
    pub turn_tls_key: Option<PathBuf>,

    /// Address of TURN over TLS. Default: the IP of --turn-listen, port 5349.
    #[arg(long, env = "VISAVIS_TURN_TLS_LISTEN", help_heading = "STUN/TURN")]
    pub turn_tls_listen: Option<SocketAddr>,
}

/// A DNS name as ACME accepts it: letters, digits and hyphens in dot-separated labels.
fn parse_domain(s: &str) -> Result<String, String> {
    let name = s.trim().trim_end_matches('.').to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !name.contains('.') || !name.split('.').all(label_ok) {
        return Err(format!("{s:?} is not a DNS name such as visit.example.com"));
    }
    if name.parse::<IpAddr>().is_ok() || name.split('.').all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format!("{s:?} is an address; --domain takes a DNS name"));
    }
    Ok(name)
}

/// A webhook receiver: an absolute http:// or https:// URL with a host, no user or password.
fn parse_webhook_url(s: &str) -> Result<String, String> {
    let uri: axum::http::Uri = s
        .parse()
        .map_err(|e| format!("{s:?} is not a URL such as https://app.example.org/hooks/visavis: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("{s:?}: a webhook URL starts with http:// or https://"));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{s:?}: a webhook URL names a host"));
    };
    if authority.host().is_empty() || authority.as_str().contains('@') {
        return Err(format!(
            "{s:?}: a webhook URL names a host, without a user or password"
        ));
    }
    Ok(s.to_owned())
}

fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (low, high) = s.split_once('-').ok_or("expected LOW-HIGH, e.g. 61000-65535")?;
    let low: u16 = low.trim().parse().map_err(|_| format!("bad port {low:?}"))?;
    let high: u16 = high.trim().parse().map_err(|_| format!("bad port {high:?}"))?;
    if low == 0 || low > high {
        return Err("need 0 < LOW <= HIGH".into());
    }
    Ok((low, high))
}

impl Settings {
    /// `--listen`, or its default (0.0.0.0:443 with `--domain`, else loopback port 8080).
    pub fn listen(&self) -> SocketAddr {
        let default = if self.domains.is_empty() {
            SocketAddr::from(([127, 0, 0, 1], 8080))
        } else {
            SocketAddr::from(([0, 0, 0, 0], 443))
        };
        self.listen.unwrap_or(default)
    }

    /// `--http-listen`, or its default (port 80 with `--domain`, else off).
    pub fn http_listen(&self) -> Option<SocketAddr> {
        let default = (!self.domains.is_empty()).then(|| SocketAddr::from(([0, 0, 0, 0], 80)));
        self.http_listen.or(default)
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout)
    }

    /// What `--preconnect` comes to: `relay` needs a TURN server to hand out (the embedded
    /// one or `--turn-url`), and is `off` without one.
    pub fn preconnect(&self) -> visavis_protocol::Preconnect {
        use visavis_protocol::Preconnect;
        let has_turn = !self.no_turn || !self.turn_urls.is_empty();
        match self.preconnect {
            PreconnectMode::Relay if has_turn => Preconnect::Relay,
            PreconnectMode::Direct => Preconnect::Direct,
            PreconnectMode::Relay | PreconnectMode::Off => Preconnect::Off,
        }
    }

    /// Where the SFU listens, if group calls use it.
    pub fn sfu_listen(&self) -> Option<SocketAddr> {
        let listen = self.listen();
        let port = if listen.port() == 0 {
            0
        } else {
            visavis_sfu::DEFAULT_PORT
        };
        (self.group_media == GroupMediaArg::Sfu)
            .then(|| self.sfu_listen.unwrap_or(SocketAddr::new(listen.ip(), port)))
    }

    /// Where the embedded TURN server listens, unless it is off.
    pub fn turn_listen(&self) -> Option<SocketAddr> {
        let embedded = !self.no_turn && self.turn_urls.is_empty();
        embedded.then(|| {
            self.turn_listen
                .unwrap_or(SocketAddr::new(self.listen().ip(), 3478))
        })
    }

    /// Where the embedded TURN server takes TURN over TLS, if it runs and has a certificate.
    pub fn turn_tls_listen(&self) -> Option<SocketAddr> {
        let listen = self.turn_listen()?;
        self.turn_tls_cert.as_ref()?;
        self.turn_tls_key.as_ref()?;
        Some(self.turn_tls_listen.unwrap_or(SocketAddr::new(listen.ip(), 5349)))
    }

    /// Whether and how the listener bound on `ip` (from `--listen`) serves HTTPS.
    pub fn https(&self, ip: IpAddr) -> Https {
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Https::Files {
                cert: cert.clone(),
                key: key.clone(),
            },
            _ if !self.domains.is_empty() => Https::Acme,
            _ if self.insecure_http || ip.is_loopback() => Https::Off,
            _ => Https::SelfSigned,
        }
    }

    /// `--turn-credential-lifetime`, or its default for the TURN server in use.
    pub fn turn_credential_lifetime(&self) -> Duration {
        let default = if self.turn_urls.is_empty() { 600 } else { 12 * 3600 };
        Duration::from_secs(self.turn_credential_lifetime.unwrap_or(default))
    }

    /// The webhook settings.
    pub fn webhooks(&self) -> crate::webhook_sender::Setup {
        crate::webhook_sender::Setup {
            urls: self.webhook_urls.clone(),
            policy: crate::webhook::Policy {
                queue: self.webhook_queue as usize,
                attempts: self.webhook_attempts,
                backoff: Duration::from_millis(self.webhook_backoff_ms),
                ..crate::webhook::Policy::default()
            },
            timeout: Duration::from_secs(self.webhook_timeout),
        }
    }

    pub fn max_message_size(&self) -> usize {
        usize::try_from(self.max_message_size).unwrap_or(usize::MAX)
    }

    pub fn max_description_size(&self) -> usize {
        usize::try_from(self.max_description_size).unwrap_or(usize::MAX)
    }

    /// Frames over this close the connection.
    pub fn frame_cap(&self) -> usize {
        visavis_signal::frame_cap(self.max_message_size(), self.max_description_size())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn https(args: &[&str]) -> Https {
        let settings = Settings::parse_from(std::iter::once("visavis").chain(args.iter().copied()));
        settings.https(settings.listen().ip())
    }

    #[test]
    fn https_unless_on_loopback_or_told_otherwise() {
        assert_eq!(https(&[]), Https::Off, "localhost is a secure context already");
        assert_eq!(https(&["--listen", "[::1]:8080"]), Https::Off);
        assert_eq!(https(&["--listen", "0.0.0.0:8443"]), Https::SelfSigned);
        assert_eq!(https(&["--listen", "192.0.2.4:8443"]), Https::SelfSigned);
        assert_eq!(
            https(&["--listen", "0.0.0.0:8080", "--insecure-http"]),
            Https::Off
        );
        assert_eq!(
            https(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]),
            Https::Files {
                cert: "c.pem".into(),
                key: "k.pem".into()
            }
        );
        assert!(
            Settings::try_parse_from(["visavis", "--tls-cert", "c.pem"]).is_err(),
            "needs the key"
        );
        assert_eq!(https(&["--domain", "visit.example.com"]), Https::Acme);
        assert_eq!(
            https(&["--domain", "a.example", "--listen", "127.0.0.1:8443"]),
            Https::Acme
        );
    }

    #[test]
    fn webhook_urls_are_http_or_https_with_a_host() {
        let parse = |url: &str| Settings::try_parse_from(["visavis", "--webhook-url", url]);
        for good in ["http://127.0.0.1:9000/hooks", "https://app.example.org/v?k=1"] {
            assert_eq!(parse(good).unwrap().webhook_urls, [good]);
        }
        for bad in [
            "ftp://a.example/x",
            "/hooks",
            "app.example.org",
            "https://u:p@a.example/",
            "http://",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_domain_makes_the_defaults_those_of_a_public_server() {
        let parse =
            |args: &[&str]| Settings::parse_from(std::iter::once("visavis").chain(args.iter().copied()));
        let plain = parse(&[]);
        assert_eq!(plain.listen(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(plain.http_listen(), None);
        let public = parse(&["--domain", "Visit.Example.com.", "--domain", "b.example.com"]);
        assert_eq!(public.domains, ["visit.example.com", "b.example.com"]);
        assert_eq!(public.listen(), "0.0.0.0:443".parse().unwrap());
        assert_eq!(public.http_listen(), Some("0.0.0.0:80".parse().unwrap()));
        assert_eq!(public.acme_directory, LETS_ENCRYPT);
        for bad in [
            "localhost",
            "192.0.2.1",
            "a..b",
            "-a.example",
            "a_b.example",
            "*.example.com",
        ] {
            assert!(
                Settings::try_parse_from(["visavis", "--domain", bad]).is_err(),
                "{bad}"
            );
        }
        assert!(
            Settings::try_parse_from(["visavis", "--domain", "a.example", "--insecure-http"]).is_err(),
            "ACME serves HTTPS"
        );
    }
}
