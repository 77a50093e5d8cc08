//! The pre-call network check's HTTP edge, `/netcheck/*` (docs/protocol.md, "Network check"):
//! TURN credentials that live a minute and belong to no member, so a page can try each STUN and
//! TURN URL before joining; and bounded download and upload bodies for a throughput estimate.
//! Every request is charged to its client address (an IPv6 /64 counts as one) in a budget per
//! minute ([`Budget`], a pure state machine given the time), and bodies never exceed
//! `--netcheck-max-bytes`; docs/security.md lists the limits.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use visavis_protocol::IceServer;
use visavis_turn::Cidr;

use crate::admission::client_ip;
use crate::http_error::HttpError;
use crate::ice::IceMinter;
use crate::token::{self, ApiCredentials};

/// How long the check's TURN credentials may open relays: long enough to gather, too short to
/// be worth taking for calls.
pub const CREDENTIAL_SECS: u64 = 60;
/// Addresses whose budget is tracked at once; past it, new addresses are refused until old
/// windows end (memory stays bounded whatever the spread of addresses).
const MAX_TRACKED: usize = 65_536;
const WINDOW: Duration = Duration::from_secs(60);
/// The download is sent in slices of this static buffer: nothing is allocated per request.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Requests per client address and minute: a fixed window per address. Pure: every call is
/// given the time.
#[derive(Debug)]
pub struct Budget {
    per_minute: u32,
    windows: HashMap<IpAddr, (Instant, u32)>,
}

impl Budget {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: HashMap::new(),
        }
    }

    /// Charges one request from `ip`; `Err(wait)` when its budget for this minute is spent (or
    /// too many addresses are tracked), with how long until it may try again.
    pub fn charge(&mut self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let key = bucket(ip);
        if !self.windows.contains_key(&key) && self.windows.len() >= MAX_TRACKED {
            self.windows
                .retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if self.windows.len() >= MAX_TRACKED {
                return Err(WINDOW);
            }
        }
        let (start, used) = self.windows.entry(key).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            *start = now;
            *used = 0;
        }
        if *used >= self.per_minute {
            return Err(WINDOW.saturating_sub(now.duration_since(*start)));
        }
        *used += 1;
        Ok(())
    }
}

/// The address a budget belongs to: IPv4 as is, IPv6 by its /64 (one subscriber's network).
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[8..].fill(0);
            IpAddr::from(octets)
        }
    }
}

/// Whether an identity was removed from a room for good: (room, identity) → revoked.
pub type Revoked = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Who the check's TURN credentials are for.
#[derive(Clone)]
pub enum TurnFor {
    /// Any page (`--access open` or `private`: anyone may join a room and relay).
    Anyone,
    /// A page with a valid access token of these credentials, as `Authorization: Bearer
    /// <token>` (`--access token`): the same people who may relay once they join; not one
    /// whose identity was removed from its room for good (`revoked`: room, identity).
    TokenHolders {
        credentials: ApiCredentials,
        revoked: Revoked,
    },
}

/// What the check's handlers share.
#[derive(Clone)]
pub struct Netcheck {
    /// STUN/TURN URLs and their secret; `None` without any.
    ice: Option<IceMinter>,
    /// Who may have TURN credentials: anyone, or (with `--access token`) only a page that
    /// holds one of this server's access tokens, as the people who may relay do; without
    /// one the check tries STUN alone.
    turn_for: TurnFor,
    max_bytes: u64,
    budget: Arc<Mutex<Budget>>,
    /// Off with `--netcheck-per-minute 0`.
    on: bool,
    trusted_proxies: Arc<[Cidr]>,
}

impl std::fmt::Debug for Netcheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netcheck")
            .field("turn_for_anyone", &matches!(self.turn_for, TurnFor::Anyone))
            .field("max_bytes", &self.max_bytes)
            .field("on", &self.on)
            .finish_non_exhaustive()
    }
}

impl Netcheck {
    pub fn new(
        ice: Option<IceMinter>,
        turn_for: TurnFor,
        per_minute: u32,
        max_bytes: u64,
        trusted_proxies: Arc<[Cidr]>,
    ) -> Self {
        Self {
            ice,
            turn_for,
            max_bytes,
            budget: Arc::new(Mutex::new(Budget::new(per_minute))),
            on: per_minute > 0,
            trusted_proxies,
        }
    }

    /// Charges the request to its client address.
    fn admit(&self, peer: SocketAddr, headers: &HeaderMap) -> Result<(), HttpError> {
        if !self.on {
            return Err(HttpError::new(
                StatusCode::NOT_FOUND,
                "netcheck_off",
                "the network check is off on this server (--netcheck-per-minute 0)".into(),
            ));
        }
        let ip = client_ip(peer.ip(), headers, &self.trusted_proxies);
        let charged = self
            .budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .charge(ip, Instant::now());
        charged.map_err(|wait| {
            let secs = wait.as_secs().max(1);
            HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "netcheck_rate_limited",
                format!("too many network checks from this address; try again in {secs} s"),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
        })
    }

    fn too_large(&self) -> HttpError {
        HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "netcheck_too_large",
            format!("at most {} bytes (--netcheck-max-bytes)", self.max_bytes),
        )
    }
}

/// The routes, for the app's router.
pub fn router<S: Clone + Send + Sync + 'static>(netcheck: Netcheck) -> Router<S> {
    Router::new()
        .route("/netcheck/ice", get(ice))
        .route("/netcheck/download", get(download))
        .route("/netcheck/upload", post(upload))
        .with_state(netcheck)
}

/// `Cache-Control: no-store` on every answer: a cached one would measure nothing.
fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn ice(
    State(check): State<Netcheck>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if let Err(err) = check.admit(peer, &headers) {
        return err.into_response();
    }
    let unix_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let may_relay = match &check.turn_for {
        TurnFor::Anyone => true,
        TurnFor::TokenHolders { credentials, revoked } => match bearer(&headers) {
            None => false,
            // A token that is given must be good: a check that quietly skipped the relay
            // would tell its holder the relay is out of reach.
            Some(jwt) => match token::verified_claims(credentials, jwt, unix_now) {
                Ok(claims) if revoked(&claims.room, &claims.sub) => {
                    let message = "this access token's holder was removed from its room".into();
                    return HttpError::new(StatusCode::FORBIDDEN, "token_revoked", message).into_response();
                }
                Ok(_) => true,
                Err(refusal) => return token_refused(refusal).into_response(),
            },
        },
    };
    let servers: Vec<IceServer> = match &check.ice {
        None => Vec::new(),
        Some(minter) if may_relay => {
            let mut tag = [0u8; 8];
            let _ = getrandom::fill(&mut tag);
            // Not `m<id>`: no member's relays, and nothing a member's leaving ends.
            let user = format!(
                "netcheck-{}",
                tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            minter.mint(&user, unix_now, CREDENTIAL_SECS)
        }
        Some(minter) => minter.stun_only(),
    };
    no_store(
        Json(serde_json::json!({
            "iceServers": servers,
            "maxBytes": check.max_bytes,
        }))
        .into_response(),
    )
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// 401 with the code a `join` with that token gets (docs/protocol.md).
fn token_refused(refusal: visavis_room::TokenRefusal) -> HttpError {
    let (code, message) = match refusal {
        visavis_room::TokenRefusal::Expired => ("token_expired", "the access token has expired"),
        // No room is asked for here, so a token is never for the wrong one.
        visavis_room::TokenRefusal::Invalid | visavis_room::TokenRefusal::WrongRoom => {
            ("token_invalid", "the access token is not one of this server's")
        }
    };
    HttpError::new(StatusCode::UNAUTHORIZED, code, message.into())
}

/// `bytes=<count>` of a query string.
fn bytes_of(uri: &Uri) -> Option<u64> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("bytes="))?
        .parse()
        .ok()
}

async fn download(
    State(check): State<Netcheck>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if let Err(err) = check.admit(peer, &headers) {
        return err.into_response();
    }
    let Some(bytes) = bytes_of(&uri) else {
        return HttpError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "give ?bytes=<count>".into(),
        )
        .into_response();
    };
    if bytes > check.max_bytes {
        return check.too_large().into_response();
    }
    let slice = ZEROS.len() as u64;
    let chunks = (0..bytes.div_ceil(slice)).map(move |i| {
        let len = (bytes - i * slice).min(slice) as usize;
        Ok::<_, Infallible>(Bytes::from_static(&ZEROS[..len]))
    });
    let mut response = Body::from_stream(futures_util::stream::iter(chunks)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    no_store(response)
}

async fn upload(
    State(check): State<Netcheck>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    if let Err(err) = check.admit(peer, request.headers()) {
        return err.into_response();
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > check.max_bytes) {
        return check.too_large().into_response();
    }
    // Counted as it streams in, never kept.
    let mut stream = request.into_body().into_data_stream();
    let mut received: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            return HttpError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body broke off".into(),
            )
            .into_response();
        };
        received += chunk.len() as u64;
        if received > check.max_bytes {
            return check.too_large().into_response();
        }
    }
    no_store(Json(serde_json::json!({ "bytes": received })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_gets_its_budget_per_minute() {
        let mut budget = Budget::new(2);
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(budget.charge(a, t0).is_ok());
        assert!(budget.charge(a, t0 + Duration::from_secs(1)).is_ok());
        let wait = budget.charge(a, t0 + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            budget.charge(b, t0 + Duration::from_secs(10)).is_ok(),
            "another address"
        );
        assert!(
            budget.charge(a, t0 + Duration::from_secs(60)).is_ok(),
            "a new minute"
        );
    }

    #[test]
    fn an_ipv6_network_shares_one_budget() {
        let mut budget = Budget::new(1);
        let t0 = Instant::now();
        assert!(budget.charge("2001:db8::1".parse().unwrap(), t0).is_ok());
        assert!(budget.charge("2001:db8::ffff:2".parse().unwrap(), t0).is_err());
        assert!(budget.charge("2001:db8:0:1::1".parse().unwrap(), t0).is_ok());
    }

    #[test]
    fn too_many_addresses_are_refused_until_their_windows_end() {
        let mut budget = Budget::new(5);
        let t0 = Instant::now();
        for i in 0..MAX_TRACKED as u32 {
            assert!(budget.charge(IpAddr::from(i.to_be_bytes()), t0).is_ok());
        }
        let newcomer: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(budget.charge(newcomer, t0 + Duration::from_secs(1)).is_err());
        assert!(budget.charge(newcomer, t0 + WINDOW).is_ok());
        assert_eq!(budget.windows.len(), 1);
    }
}
