//! The TURN server state machine (RFC 8656, UDP relays), sans-IO.
//!
//! The edge feeds it datagrams/frames from clients ([`TurnServer::handle_client`]) and from
//! peers arriving on relay sockets ([`TurnServer::handle_peer`]), plus the passage of time
//! ([`TurnServer::handle_timeout`], due at [`TurnServer::poll_timeout`]); it drains [`Output`]s:
//! bytes for a client, bytes for a peer through a relay socket, and requests to bind or close
//! relay sockets. Binding a relay socket is the edge's job: the core asks with
//! [`Output::BindRelay`] and the edge answers with [`TurnServer::handle_relay_bound`] before
//! handling anything else. The drive loop is the one every visavis core shares (see
//! `visavis_sansio`).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use visavis_sansio::{Deadlines, Now, TokenBucket};

use crate::auth::{long_term_key, member_of, Nonces, RestSecret};
use crate::policy::{normalise, PeerPolicy};
use crate::stun::{self, attr, method, Class, Message, MessageBuilder};

/// How a client reaches the server; part of the allocation's 5-tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// A client's transport address as the server sees it (the 5-tuple, the server side being fixed
/// per transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientAddr {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Settings of the TURN core.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    pub realm: String,
    pub secret: RestSecret,
    pub nonces: Nonces,
    pub policy: PeerPolicy,
    /// Lifetime given when the client asks for less (or nothing).
    pub default_lifetime: Duration,
    /// Longest lifetime granted.
    pub max_lifetime: Duration,
    /// Allocations one user (the id part of the REST username) may hold.
    pub user_quota: usize,
    /// Allocations the whole server may hold.
    pub total_quota: usize,
    /// Allocations the clients of one IP address may hold, whatever users they present
    /// (credentials are handed to everyone who joins, so users alone bound nothing).
    pub ip_quota: usize,
    /// Permissions, and channels, one allocation may hold.
    pub max_permissions: usize,
    /// Relayed bytes per second per allocation, both directions together; excess is dropped.
    pub bandwidth: u64,
    /// Unauthenticated (or failing) requests per second per client IP, and the burst allowed.
    pub unauth_rate: (u32, u32),
    /// Whether the signalling server reports its members (`handle_member_joined/left`). If so,
    /// credentials of member users (`m<id>`, see `auth::member_user`) work only while that
    /// member is in a room, and its allocations end when it leaves; they may be refreshed past
    /// the credential's expiry meanwhile (a call outlasts it), but new allocations need an
    /// unexpired credential. Other users' credentials work until they expire.
    pub members: bool,
    /// The server's own services that relayed clients may reach, address and port exactly
    /// (the SFU's UDP address): allowed even where the policy denies their range (loopback, a
    /// private LAN), as exact permissions, so nothing else at that address opens up.
    pub services: Vec<SocketAddr>,
}

const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
const UDP: u8 = 17;

/// Unauthenticated rate-limit buckets are kept per client IP; above this many, the idle ones
/// are forgotten, so a flood from spoofed addresses cannot grow the map without bound.
const UNAUTH_BUCKETS_KEPT: usize = 10_000;
/// A bucket unused this long may be forgotten (when there are too many).
const UNAUTH_IDLE: Duration = Duration::from_secs(10);
/// Sweeps of the buckets are at least this far apart: each one walks the whole map.
const UNAUTH_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Something for the edge to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send bytes to a client over its transport.
    ToClient { client: ClientAddr, data: Vec<u8> },
    /// Send bytes from the relay socket `relay` to `peer`.
    ToPeer {
        relay: SocketAddr,
        peer: SocketAddr,
        data: Vec<u8>,
    },
    /// Bind a relay socket for `client` (IPv6 or IPv4; on an even port if `even`, as
    /// EVEN-PORT asks for RTP); answer with `handle_relay_bound`.
    BindRelay {
        client: ClientAddr,
        ipv6: bool,
        even: bool,
    },
    /// The allocation on `relay` is gone: close its socket.
    CloseRelay { relay: SocketAddr },
}

/// Counts for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TurnCounts {
    pub allocations: usize,
    pub users: usize,
    pub relayed_packets: u64,
    /// Payload bytes relayed, both ways.
    pub relayed_bytes: u64,
    pub dropped_packets: u64,
    /// Permissions and channels refused for a peer address the policy forbids (loopback,
    /// private, this server's own...): each one a client trying to reach what it may not.
    pub refused_peers: u64,
}

#[derive(Debug)]
struct Allocation {
    client: ClientAddr,
    username: String,
    user: String,
    key: [u8; 16],
    /// The transaction that created it, so a retransmitted Allocate gets the same answer.
    created_by: stun::TransactionId,
    /// Peer IP → (expiry, `exact`): an exact permission was granted only because the peer
    /// was one of our own relay addresses, so data may go to those addresses alone (the
    /// permission would otherwise open every port of, say, the server's loopback).
    permissions: HashMap<IpAddr, (Instant, bool)>,
    /// Under an exact permission, the relay addresses it was granted for: every relay shares
    /// the server's IP, so another client's relay must not pass as the permitted one (it would
    /// inject data and spend this allocation's bandwidth).
    exact_peers: std::collections::HashSet<SocketAddr>,
    channels: HashMap<u16, (SocketAddr, Instant)>,
    channel_of_peer: HashMap<SocketAddr, u16>,
    bucket: TokenBucket,
}

impl Allocation {
    /// Whether `peers` fit in the permission table (at most `max` IPs), after dropping the
    /// expired ones, which are otherwise only forgotten when used.
    fn has_room_for_permissions(&mut self, now: Instant, peers: &[(SocketAddr, bool)], max: usize) -> bool {
        self.permissions.retain(|_, (expires, _)| *expires > now);
        let permissions = &self.permissions;
        self.exact_peers.retain(|p| permissions.contains_key(&p.ip()));
        if self.exact_peers.len() + peers.len() > max {
            return false;
        }
        let new = peers
            .iter()
            .filter(|(p, _)| !self.permissions.contains_key(&p.ip()))
            .map(|(p, _)| p.ip())
            .collect::<std::collections::HashSet<_>>()
            .len();
        self.permissions.len() + new <= max
    }

    /// Permits `peer` (exactly that address if `exact`) for the permission lifetime. An exact
    /// permission never narrows an open one for the same IP, nor widens into one.
    fn grant(&mut self, now: Instant, peer: SocketAddr, exact: bool) {
        let exact = exact && self.permissions.get(&peer.ip()).is_none_or(|(_, e)| *e);
        if exact {
            self.exact_peers.insert(peer);
        }
        self.permissions
            .insert(peer.ip(), (now + PERMISSION_LIFETIME, exact));
    }

    /// Whether data from or to `peer` is permitted at `now`.
    fn permits(&self, now: Instant, peer: SocketAddr) -> bool {
        self.permissions
            .get(&peer.ip())
            .is_some_and(|(expires, exact)| *expires > now && (!exact || self.exact_peers.contains(&peer)))
    }

    /// Whether one more channel fits (at most `max`), after dropping the expired ones.
    fn has_room_for_channel(&mut self, now: Instant, max: usize) -> bool {
        let expired: Vec<u16> = self
            .channels
            .iter()
            .filter(|(_, (_, expires))| *expires <= now)
            .map(|(ch, _)| *ch)
            .collect();
        for ch in expired {
            if let Some((peer, _)) = self.channels.remove(&ch) {
                self.channel_of_peer.remove(&peer);
            }
        }
        self.channels.len() < max
    }
}

#[derive(Debug)]
struct PendingAllocate {
    tid: stun::TransactionId,
    username: String,
    user: String,
    key: [u8; 16],
    lifetime: Duration,
}

/// The authenticated identity of a request.
struct Auth {
    username: String,
    user: String,
    key: [u8; 16],
}

/// The TURN server's state: allocations, permissions, channels, quotas.
#[derive(Debug)]
pub struct TurnServer {
    config: TurnConfig,
    /// Relay addresses the edge can bind, to decide which families are offered.
    relay_v4: bool,
    relay_v6: bool,
    allocations: HashMap<SocketAddr, Allocation>,
    by_client: HashMap<ClientAddr, SocketAddr>,
    /// When each allocation (by relay address) expires.
    expiries: Deadlines<SocketAddr>,
    /// Each user's allocations (by relay address).
    users: HashMap<String, Vec<SocketAddr>>,
    /// Members in a room, when the signalling server reports them (`TurnConfig::members`).
    members: std::collections::HashSet<u64>,
    /// Allocations per client IP.
    by_ip: HashMap<IpAddr, usize>,
    /// The server's own addresses: a peer there is refused but for exact relay addresses.
    own_ips: Vec<IpAddr>,
    pending: HashMap<ClientAddr, PendingAllocate>,
    unauth: HashMap<IpAddr, TokenBucket>,
    /// When idle `unauth` buckets are next swept; set only while there are too many of them.
    unauth_sweep: Option<Instant>,
    relayed: u64,
    relayed_bytes: u64,
    dropped: u64,
    refused_peers: u64,
    out: VecDeque<Output>,
}

/// Attributes this server understands in requests.
const KNOWN: &[u16] = &[
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::REALM,
    attr::NONCE,
    attr::LIFETIME,
    attr::XOR_PEER_ADDRESS,
    attr::DATA,
    attr::CHANNEL_NUMBER,
    attr::REQUESTED_TRANSPORT,
    attr::REQUESTED_ADDRESS_FAMILY,
    attr::DONT_FRAGMENT,
    attr::EVEN_PORT,
    attr::ERROR_CODE,
    attr::XOR_MAPPED_ADDRESS,
    attr::MAPPED_ADDRESS,
    attr::MESSAGE_INTEGRITY_SHA256,
    0x0024, // PRIORITY (ICE connectivity checks sent as Binding)
    0x0025, // USE-CANDIDATE
];

impl TurnServer {
    /// `relay_ips` are the addresses the edge binds relay sockets on.
    pub fn new(config: TurnConfig, relay_ips: &[IpAddr]) -> Self {
        Self {
            config,
            relay_v4: relay_ips.iter().any(IpAddr::is_ipv4),
            relay_v6: relay_ips.iter().any(IpAddr::is_ipv6),
            allocations: HashMap::new(),
            by_client: HashMap::new(),
            expiries: Deadlines::default(),
            users: HashMap::new(),
            members: std::collections::HashSet::new(),
            by_ip: HashMap::new(),
            own_ips: relay_ips.iter().copied().map(normalise).collect(),
            pending: HashMap::new(),
            unauth: HashMap::new(),
            unauth_sweep: None,
            relayed: 0,
            relayed_bytes: 0,
            dropped: 0,
            refused_peers: 0,
            out: VecDeque::new(),
        }
    }

    pub fn counts(&self) -> TurnCounts {
        TurnCounts {
            allocations: self.allocations.len(),
            users: self.users.len(),
            relayed_packets: self.relayed,
            relayed_bytes: self.relayed_bytes,
            dropped_packets: self.dropped,
            refused_peers: self.refused_peers,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When `handle_timeout` next has work: an allocation expires or idle rate-limit buckets
    /// are due to be swept. Permissions and channels need no timer: they are checked against
    /// the time when used, and go with their allocation.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.expiries.next(), self.unauth_sweep]
            .into_iter()
            .flatten()
            .min()
    }

    /// Expires allocations whose lifetime is over, and forgets idle rate-limit buckets.
    pub fn handle_timeout(&mut self, now: Now) {
        while let Some(relay) = self.expiries.pop_due(now.mono) {
            self.remove_allocation(relay);
        }
        if self.unauth_sweep.is_some_and(|at| at <= now.mono) {
            self.sweep_unauth(now.mono);
        }
    }

    /// Forgets the rate-limit buckets idle for `UNAUTH_IDLE`, and sets the next sweep: while
    /// there are still too many, as soon as the oldest of them can go (but not sooner than
    /// `UNAUTH_SWEEP_INTERVAL`); none once there are few enough.
    fn sweep_unauth(&mut self, now: Instant) {
        let mut oldest: Option<Instant> = None;
        self.unauth.retain(|_, b| {
            let keep = now.saturating_duration_since(b.last_used()) < UNAUTH_IDLE;
            if keep {
                oldest = Some(oldest.map_or(b.last_used(), |o| o.min(b.last_used())));
            }
            keep
        });
        self.unauth_sweep = match oldest {
            Some(oldest) if self.unauth.len() > UNAUTH_BUCKETS_KEPT => {
                Some((oldest + UNAUTH_IDLE).max(now + UNAUTH_SWEEP_INTERVAL))
            }
            _ => None,
        };
    }

    /// A member of the signalling server joined a room: its credentials work from now on.
    pub fn handle_member_joined(&mut self, member: u64) {
        self.members.insert(member);
    }

    /// A member left its room: its credentials stop working and its allocations (and any it
    /// is still being given) end now.
    pub fn handle_member_left(&mut self, member: u64) {
        self.members.remove(&member);
        let user = crate::auth::member_user(member);
        self.pending.retain(|_, p| p.user != user);
        for relay in self.users.get(&user).cloned().unwrap_or_default() {
            self.remove_allocation(relay);
        }
    }

    /// The client's connection closed (TCP/TLS): its allocation goes with it.
    pub fn handle_client_closed(&mut self, client: ClientAddr) {
        self.pending.remove(&client);
        if let Some(relay) = self.by_client.get(&client).copied() {
            self.remove_allocation(relay);
        }
    }

    /// A datagram or frame from a client: a STUN message or ChannelData.
    pub fn handle_client(&mut self, now: Now, client: ClientAddr, buf: &[u8]) {
        if stun::is_stun(buf) {
            match Message::parse(buf) {
                Ok(msg) => self.handle_stun(now, client, &msg),
                Err(_) => self.dropped += 1,
            }
        } else if let Some((channel, data)) = stun::parse_channel_data(buf) {
            self.channel_data_from_client(now, client, channel, data);
        } else {
            self.dropped += 1;
        }
    }

    /// A datagram that arrived from `peer` on the relay socket `relay`.
    pub fn handle_peer(&mut self, now: Now, relay: SocketAddr, peer: SocketAddr, data: &[u8]) {
        let Some(alloc) = self.allocations.get_mut(&relay) else {
            return;
        };
        // Only permitted traffic is charged: a stranger cannot spend this allocation's budget.
        if !alloc.permits(now.mono, peer) || !alloc.bucket.take(now.mono, data.len() as f64) {
            self.dropped += 1;
            return;
        }
        let client = alloc.client;
        let frame = match alloc.channel_of_peer.get(&peer) {
            Some(&channel)
                if alloc
                    .channels
                    .get(&channel)
                    .is_some_and(|(_, exp)| *exp > now.mono) =>
            {
                let mut frame = Vec::with_capacity(data.len() + 8);
                stun::write_channel_data(&mut frame, channel, data, client.transport != Transport::Udp);
                frame
            }
            _ => MessageBuilder::new(Class::Indication, method::DATA, sequence_tid(self.relayed))
                .xor_address(attr::XOR_PEER_ADDRESS, peer)
                .attr(attr::DATA, data)
                .finish(),
        };
        self.relayed += 1;
        self.relayed_bytes += data.len() as u64;
        self.out.push_back(Output::ToClient { client, data: frame });
    }

    /// The edge bound (or failed to bind) the relay socket asked for by `BindRelay`.
    pub fn handle_relay_bound(&mut self, now: Now, client: ClientAddr, relay: Result<SocketAddr, ()>) {
        let Some(p) = self.pending.remove(&client) else {
            // The client went away meanwhile.
            if let Ok(relay) = relay {
                self.out.push_back(Output::CloseRelay { relay });
            }
            return;
        };
        let Ok(relay) = relay else {
            let resp = error_response(method::ALLOCATE, p.tid, 508, "Insufficient Capacity")
                .integrity(&p.key)
                .fingerprint()
                .finish();
            self.send(client, resp);
            return;
        };
        let bandwidth = self.config.bandwidth as f64;
        self.allocations.insert(
            relay,
            Allocation {
                client,
                username: p.username,
                user: p.user.clone(),
                key: p.key,
                created_by: p.tid,
                permissions: HashMap::new(),
                exact_peers: std::collections::HashSet::new(),
                channels: HashMap::new(),
                channel_of_peer: HashMap::new(),
                bucket: TokenBucket::new(bandwidth, bandwidth.max(64.0 * 1024.0), now.mono),
            },
        );
        self.by_client.insert(client, relay);
        self.expiries.insert(relay, now.mono + p.lifetime);
        self.users.entry(p.user).or_default().push(relay);
        *self.by_ip.entry(client.addr.ip()).or_default() += 1;
        let resp = allocate_success(p.tid, relay, client.addr, p.lifetime, &p.key);
        self.send(client, resp);
    }

    fn handle_stun(&mut self, now: Now, client: ClientAddr, msg: &Message<'_>) {
        match (msg.class, msg.method) {
            (Class::Request, method::BINDING) => {
                let resp = MessageBuilder::new(Class::Success, method::BINDING, msg.transaction_id)
                    .xor_address(attr::XOR_MAPPED_ADDRESS, client.addr)
                    .fingerprint()
                    .finish();
                // Anyone may ask, with a forged source address too: answered within the
                // unauthenticated budget, so the server cannot be used to amplify a flood.
                self.refuse(now, client, resp);
            }
            (Class::Indication, method::SEND) => self.send_indication(now, client, msg),
            (Class::Request, m)
                if [
                    method::ALLOCATE,
                    method::REFRESH,
                    method::CREATE_PERMISSION,
                    method::CHANNEL_BIND,
                ]
                .contains(&m) =>
            {
                let unknown = msg.unknown_required(KNOWN);
                if !unknown.is_empty() {
                    let list: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
                    let resp = error_response(m, msg.transaction_id, 420, "Unknown Attribute")
                        .attr(attr::UNKNOWN_ATTRIBUTES, &list)
                        .fingerprint()
                        .finish();
                    return self.refuse(now, client, resp);
                }
                let Some(auth) = self.authenticate(now, client, msg) else {
                    return;
                };
                match m {
                    method::ALLOCATE => self.allocate(now, client, msg, auth),
                    method::REFRESH => self.refresh(now, client, msg, &auth),
                    method::CREATE_PERMISSION => self.create_permission(now, client, msg, &auth),
                    _ => self.channel_bind(now, client, msg, &auth),
                }
            }
            // Responses, and requests of methods we do not serve, are dropped.
            _ => self.dropped += 1,
        }
    }

    /// Checks the long-term credential of a request; answers the challenge or the refusal
    /// itself and returns None when the request must not go on.
    fn authenticate(&mut self, now: Now, client: ClientAddr, msg: &Message<'_>) -> Option<Auth> {
        let m = msg.method;
        let tid = msg.transaction_id;
        if !msg.has(attr::MESSAGE_INTEGRITY) {
            self.challenge(now, client, m, tid, 401, "Unauthorized");
            return None;
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            msg.text(attr::USERNAME),
            msg.text(attr::REALM),
            msg.text(attr::NONCE),
        ) else {
            self.refuse(
                now,
                client,
                error_response(m, tid, 400, "Bad Request").fingerprint().finish(),
            );
            return None;
        };
        let unix = now.unix_secs();
        if !self.config.nonces.is_valid(nonce, unix, client.addr.ip()) || realm != self.config.realm {
            self.challenge(now, client, m, tid, 438, "Stale Nonce");
            return None;
        }
        let Some((expiry, user)) = RestSecret::parse_username(username) else {
            self.challenge(now, client, m, tid, 401, "Unauthorized");
            return None;
        };
        let fresh = expiry > unix;
        let valid = match member_of(user).filter(|_| self.config.members) {
            Some(member) => self.members.contains(&member) && (fresh || m != method::ALLOCATE),
            None => fresh,
        };
        if !valid {
            self.challenge(now, client, m, tid, 401, "Unauthorized");
            return None;
        }
        let user = user.to_owned();
        let key = long_term_key(username, realm, &self.config.secret.password(username));
        if !msg.verify_integrity(&key) {
            self.challenge(now, client, m, tid, 401, "Unauthorized");
            return None;
        }
        Some(Auth {
            username: username.to_owned(),
            user,
            key,
        })
    }

    /// A 401/438 carrying a fresh realm and nonce; rate-limited per client IP.
    fn challenge(
        &mut self,
        now: Now,
        client: ClientAddr,
        m: u16,
        tid: stun::TransactionId,
        code: u16,
        reason: &str,
    ) {
        let nonce = self.config.nonces.issue(now.unix_secs(), client.addr.ip());
        let resp = error_response(m, tid, code, reason)
            .attr(attr::REALM, self.config.realm.as_bytes())
            .attr(attr::NONCE, nonce.as_bytes())
            .fingerprint()
            .finish();
        self.refuse(now, client, resp);
    }

    /// Sends a refusal unless this IP is over its rate of unauthenticated requests, in which
    /// case it is dropped: a flood of bad requests costs the server almost nothing.
    fn refuse(&mut self, now: Now, client: ClientAddr, resp: Vec<u8>) {
        let (rate, burst) = self.config.unauth_rate;
        let bucket = self
            .unauth
            .entry(client.addr.ip())
            .or_insert_with(|| TokenBucket::new(f64::from(rate), f64::from(burst), now.mono));
        let allowed = bucket.take(now.mono, 1.0);
        if self.unauth.len() > UNAUTH_BUCKETS_KEPT && self.unauth_sweep.is_none() {
            // Too many buckets: the idle ones are swept out soon (see `sweep_unauth`).
            self.unauth_sweep = Some(now.mono + UNAUTH_SWEEP_INTERVAL);
        }
        if allowed {
            self.send(client, resp);
        } else {
            self.dropped += 1;
        }
    }

    fn allocate(&mut self, now: Now, client: ClientAddr, msg: &Message<'_>, auth: Auth) {
        let tid = msg.transaction_id;
        let fail = |code, reason| {
            error_response(method::ALLOCATE, tid, code, reason)
                .integrity(&auth.key)
                .fingerprint()
                .finish()
        };
        if let Some(relay) = self.by_client.get(&client).copied() {
            let alloc = &self.allocations[&relay];
            let resp = if alloc.created_by == tid {
                // A retransmission whose answer was lost.
                let lifetime = self
                    .expiries
                    .get(relay)
                    .map_or(Duration::ZERO, |at| at.saturating_duration_since(now.mono));
                allocate_success(tid, relay, client.addr, lifetime, &alloc.key)
            } else {
                fail(437, "Allocation Mismatch")
            };
            return self.send(client, resp);
        }
        if self.pending.contains_key(&client) {
            return;
        }
        match msg.get(attr::REQUESTED_TRANSPORT) {
            None => return self.send(client, fail(400, "Bad Request")),
            Some(v) if v.first() != Some(&UDP) => {
                return self.send(client, fail(442, "Unsupported Transport Protocol"))
            }
            Some(_) => {}
        }
        let ipv6 = match msg.get(attr::REQUESTED_ADDRESS_FAMILY).and_then(|v| v.first()) {
            None => !self.relay_v4,
            Some(0x01) => false,
            Some(0x02) => true,
            Some(_) => return self.send(client, fail(440, "Address Family not Supported")),
        };
        if (ipv6 && !self.relay_v6) || (!ipv6 && !self.relay_v4) {
            return self.send(client, fail(440, "Address Family not Supported"));
        }
        if self.users.get(&auth.user).map_or(0, Vec::len) >= self.config.user_quota {
            return self.send(client, fail(486, "Allocation Quota Reached"));
        }
        let ip = client.addr.ip();
        let from_ip = self.by_ip.get(&ip).copied().unwrap_or(0)
            + self.pending.keys().filter(|c| c.addr.ip() == ip).count();
        if from_ip >= self.config.ip_quota {
            return self.send(client, fail(486, "Allocation Quota Reached"));
        }
        if self.allocations.len() + self.pending.len() >= self.config.total_quota {
            return self.send(client, fail(508, "Insufficient Capacity"));
        }
        let lifetime = self.granted_lifetime(msg);
        // EVEN-PORT's R bit asks to reserve the next port too; that is optional (a client
        // gets no RESERVATION-TOKEN and allocates the next one normally).
        let even = msg.has(attr::EVEN_PORT);
        self.pending.insert(
            client,
            PendingAllocate {
                tid,
                username: auth.username,
                user: auth.user,
                key: auth.key,
                lifetime,
            },
        );
        self.out.push_back(Output::BindRelay { client, ipv6, even });
    }

    fn granted_lifetime(&self, msg: &Message<'_>) -> Duration {
        let asked = msg.u32(attr::LIFETIME).map(|s| Duration::from_secs(u64::from(s)));
        asked
            .unwrap_or(self.config.default_lifetime)
            .clamp(self.config.default_lifetime, self.config.max_lifetime)
    }

    /// The allocation of `client`, if `auth` is the user that made it; sends the error if not.
    fn own_allocation(&mut self, client: ClientAddr, msg: &Message<'_>, auth: &Auth) -> Option<SocketAddr> {
        let fail = |code, reason| {
            error_response(msg.method, msg.transaction_id, code, reason)
                .integrity(&auth.key)
                .fingerprint()
                .finish()
        };
        let Some(relay) = self.by_client.get(&client).copied() else {
            self.send(client, fail(437, "Allocation Mismatch"));
            return None;
        };
        if self.allocations[&relay].username != auth.username {
            self.send(client, fail(441, "Wrong Credentials"));
            return None;
        }
        Some(relay)
    }

    fn refresh(&mut self, now: Now, client: ClientAddr, msg: &Message<'_>, auth: &Auth) {
        let Some(relay) = self.own_allocation(client, msg, auth) else {
            return;
        };
        let lifetime = if msg.u32(attr::LIFETIME) == Some(0) {
            self.remove_allocation(relay);
            Duration::ZERO
        } else {
            let lifetime = self.granted_lifetime(msg);
            self.expiries.insert(relay, now.mono + lifetime);
            lifetime
        };
        let resp = MessageBuilder::new(Class::Success, method::REFRESH, msg.transaction_id)
            .u32(attr::LIFETIME, lifetime.as_secs() as u32)
            .integrity(&auth.key)
            .fingerprint()
            .finish();
        self.send(client, resp);
    }

    /// Counts a CreatePermission/ChannelBind answered with `code`, if [`Self::check_peer`]
    /// refused its peer (403).
    fn count_refusal(&mut self, code: u16) {
        if code == 403 {
            self.refused_peers += 1;
        }
    }

    /// Checks a peer address for CreatePermission/ChannelBind: the peer and whether it is
    /// allowed only as one of our own relay addresses, or the error to send.
    fn check_peer(
        &self,
        relay: SocketAddr,
        peer: Option<SocketAddr>,
    ) -> Result<(SocketAddr, bool), (u16, &'static str)> {
        let peer = peer.ok_or((400, "Bad Request"))?;
        if peer.is_ipv4() != relay.is_ipv4() {
            return Err((443, "Peer Address Family Mismatch"));
        }
        let ours = self.own_ips.contains(&normalise(peer.ip()));
        if !ours && self.config.policy.permits(peer.ip()) {
            Ok((peer, false))
        } else if self.allocations.contains_key(&peer) || self.is_service(peer) {
            // Another client of this server: two people relayed here can reach each other;
            // or one of the server's services (the SFU), for browsers that only reach relays.
            Ok((peer, true))
        } else {
            Err((403, "Forbidden"))
        }
    }

    /// Whether `peer` is one of the server's own services (`TurnConfig::services`), in any
    /// of its IPv4 forms.
    fn is_service(&self, peer: SocketAddr) -> bool {
        let peer = SocketAddr::new(normalise(peer.ip()), peer.port());
        self.config.services.contains(&peer)
    }

    fn create_permission(&mut self, now: Now, client: ClientAddr, msg: &Message<'_>, auth: &Auth) {
        let Some(relay) = self.own_allocation(client, msg, auth) else {
            return;
        };
        let peers = msg.xor_addresses(attr::XOR_PEER_ADDRESS);
        let checked: Result<Vec<(SocketAddr, bool)>, _> = if peers.is_empty() {
            Err((400, "Bad Request"))
        } else {
            peers.into_iter().map(|p| self.check_peer(relay, p)).collect()
        };
        let max = self.config.max_permissions;
        let checked = checked.and_then(|peers| {
            let room = self
                .allocations
                .get_mut(&relay)
                .is_some_and(|alloc| alloc.has_room_for_permissions(now.mono, &peers, max));
            if room {
                Ok(peers)
            } else {
                Err((508, "Insufficient Capacity"))
            }
        });
        let resp = match checked {
            Ok(peers) => {
                if let Some(alloc) = self.allocations.get_mut(&relay) {
                    for (peer, exact) in peers {
                        alloc.grant(now.mono, peer, exact);
                    }
                }
                MessageBuilder::new(Class::Success, method::CREATE_PERMISSION, msg.transaction_id)
            }
            Err((code, reason)) => {
                self.count_refusal(code);
                error_response(method::CREATE_PERMISSION, msg.transaction_id, code, reason)
            }
        };
        self.send(client, resp.integrity(&auth.key).fingerprint().finish());
    }

    fn channel_bind(&mut self, now: Now, client: ClientAddr, msg: &Message<'_>, auth: &Auth) {
        let Some(relay) = self.own_allocation(client, msg, auth) else {
            return;
        };
        let channel = msg.u32(attr::CHANNEL_NUMBER).map(|v| (v >> 16) as u16);
        let result = match channel {
            Some(ch) if stun::is_channel_number(ch) => self
                .check_peer(relay, msg.xor_address(attr::XOR_PEER_ADDRESS))
                .and_then(|(peer, exact)| {
                    let max = self.config.max_permissions;
                    let alloc = self
                        .allocations
                        .get_mut(&relay)
                        .ok_or((437, "Allocation Mismatch"))?;
                    let other_peer = alloc.channels.get(&ch).is_some_and(|(p, _)| *p != peer);
                    let other_channel = alloc.channel_of_peer.get(&peer).is_some_and(|c| *c != ch);
                    if other_peer || other_channel {
                        return Err((400, "Bad Request"));
                    }
                    let new_channel = !alloc.channels.contains_key(&ch);
                    let full = new_channel && !alloc.has_room_for_channel(now.mono, max);
                    if full || !alloc.has_room_for_permissions(now.mono, &[(peer, exact)], max) {
                        return Err((508, "Insufficient Capacity"));
                    }
                    Ok((ch, peer, exact))
                }),
            _ => Err((400, "Bad Request")),
        };
        let resp = match result {
            Ok((ch, peer, exact)) => {
                if let Some(alloc) = self.allocations.get_mut(&relay) {
                    alloc.channels.insert(ch, (peer, now.mono + CHANNEL_LIFETIME));
                    alloc.channel_of_peer.insert(peer, ch);
                    alloc.grant(now.mono, peer, exact);
                }
                MessageBuilder::new(Class::Success, method::CHANNEL_BIND, msg.transaction_id)
            }
            Err((code, reason)) => {
                self.count_refusal(code);
                error_response(method::CHANNEL_BIND, msg.transaction_id, code, reason)
            }
        };
        self.send(client, resp.integrity(&auth.key).fingerprint().finish());
    }

    fn send_indication(&mut self, now: Now, client: ClientAddr, msg: &Message<'_>) {
        let (Some(peer), Some(data)) = (msg.xor_address(attr::XOR_PEER_ADDRESS), msg.get(attr::DATA)) else {
            self.dropped += 1;
            return;
        };
        self.relay_to_peer(now, client, peer, data);
    }

    fn channel_data_from_client(&mut self, now: Now, client: ClientAddr, channel: u16, data: &[u8]) {
        let peer = self
            .by_client
            .get(&client)
            .and_then(|relay| self.allocations.get(relay))
            .and_then(|a| a.channels.get(&channel))
            .filter(|(_, exp)| *exp > now.mono)
            .map(|(peer, _)| *peer);
        match peer {
            Some(peer) => self.relay_to_peer(now, client, peer, data),
            None => self.dropped += 1,
        }
    }

    fn relay_to_peer(&mut self, now: Now, client: ClientAddr, peer: SocketAddr, data: &[u8]) {
        let Some(relay) = self.by_client.get(&client).copied() else {
            self.dropped += 1;
            return;
        };
        // An exact permission is for a relay of this server that still exists (its port may be
        // handed to someone else once it is gone).
        let gone = !self.allocations.contains_key(&peer) && !self.is_service(peer);
        let Some(alloc) = self.allocations.get_mut(&relay) else {
            return;
        };
        let exact = alloc.permissions.get(&peer.ip()).is_some_and(|(_, e)| *e);
        if (exact && gone)
            || !alloc.permits(now.mono, peer)
            || !alloc.bucket.take(now.mono, data.len() as f64)
        {
            self.dropped += 1;
            return;
        }
        self.relayed += 1;
        self.relayed_bytes += data.len() as u64;
        self.out.push_back(Output::ToPeer {
            relay,
            peer,
            data: data.to_vec(),
        });
    }

    fn remove_allocation(&mut self, relay: SocketAddr) {
        let Some(alloc) = self.allocations.remove(&relay) else {
            return;
        };
        self.expiries.remove(relay);
        self.by_client.remove(&alloc.client);
        if let Some(relays) = self.users.get_mut(&alloc.user) {
            relays.retain(|r| *r != relay);
            if relays.is_empty() {
                self.users.remove(&alloc.user);
            }
        }
        let ip = alloc.client.addr.ip();
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
        self.out.push_back(Output::CloseRelay { relay });
    }

    fn send(&mut self, client: ClientAddr, data: Vec<u8>) {
        self.out.push_back(Output::ToClient { client, data });
    }
}

fn error_response(m: u16, tid: stun::TransactionId, code: u16, reason: &str) -> MessageBuilder {
    MessageBuilder::new(Class::Error, m, tid).error(code, reason)
}

fn allocate_success(
    tid: stun::TransactionId,
    relay: SocketAddr,
    mapped: SocketAddr,
    lifetime: Duration,
    key: &[u8],
) -> Vec<u8> {
    MessageBuilder::new(Class::Success, method::ALLOCATE, tid)
        .xor_address(attr::XOR_RELAYED_ADDRESS, relay)
        .xor_address(attr::XOR_MAPPED_ADDRESS, mapped)
        .u32(attr::LIFETIME, lifetime.as_secs() as u32)
        .integrity(key)
        .fingerprint()
        .finish()
}

/// Transaction ids of Data indications only need to differ between packets (RFC 8656 §11.6);
/// they protect nothing, so a counter is enough.
fn sequence_tid(n: u64) -> stun::TransactionId {
    let mut tid = [0; 12];
    tid[4..].copy_from_slice(&n.to_be_bytes());
    tid
}

#[cfg(test)]
mod tests;
