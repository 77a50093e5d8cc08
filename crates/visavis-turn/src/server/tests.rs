//! Scenario tests of the TURN core: a scripted client, a fake clock, no sockets.

use super::*;
use crate::policy::Cidr;

const SECRET: &str = "test-secret";
const REALM: &str = "visavis";

struct World {
    turn: TurnServer,
    now: Now,
    next_port: u16,
}

fn config() -> TurnConfig {
    TurnConfig {
        realm: REALM.into(),
        secret: RestSecret::new(SECRET),
        nonces: Nonces::new([1; 32], 120),
        policy: PeerPolicy::default(),
        default_lifetime: Duration::from_secs(600),
        max_lifetime: Duration::from_secs(3600),
        user_quota: 3,
        total_quota: 5,
        ip_quota: 100,
        max_permissions: 8,
        bandwidth: 100_000,
        unauth_rate: (5, 10),
        members: false,
        services: Vec::new(),
    }
}

fn client(port: u16) -> ClientAddr {
    ClientAddr {
        transport: Transport::Udp,
        addr: SocketAddr::from(([203, 0, 113, 10], port)),
    }
}

/// A peer on the public internet (allowed by the default policy).
fn public_peer(port: u16) -> SocketAddr {
    SocketAddr::from(([8, 8, 8, 8], port))
}

impl World {
    fn new(config: TurnConfig) -> Self {
        Self {
            turn: TurnServer::new(config, &["198.51.100.1".parse().unwrap()]),
            now: Now {
                mono: Instant::now(),
                unix_ms: 1_700_000_000_000,
            },
            next_port: 50_000,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now = self.now.after(by);
        self.turn.handle_timeout(self.now);
    }

    /// Feeds a message from `c` and returns what the core wants done; binds relays itself.
    fn input(&mut self, c: ClientAddr, bytes: &[u8]) -> Vec<Output> {
        self.turn.handle_client(self.now, c, bytes);
        let mut outputs = Vec::new();
        while let Some(out) = self.turn.poll_output() {
            if let Output::BindRelay { client, ipv6, even } = out {
                self.next_port += 1;
                if even && self.next_port % 2 == 1 {
                    self.next_port += 1;
                }
                let ip: IpAddr = if ipv6 {
                    "2001:db8::1".parse().unwrap()
                } else {
                    "198.51.100.1".parse().unwrap()
                };
                let relay = SocketAddr::new(ip, self.next_port);
                self.turn.handle_relay_bound(self.now, client, Ok(relay));
            } else {
                outputs.push(out);
            }
        }
        outputs
    }

    /// The one response `c` gets, parsed into (class, error code, bytes).
    fn request(&mut self, c: ClientAddr, bytes: &[u8]) -> Response {
        let outs = self.input(c, bytes);
        match &outs[..] {
            [Output::ToClient { client, data }] if *client == c => Response(data.clone()),
            other => panic!("expected one response, got {other:?}"),
        }
    }

    fn silent(&mut self, c: ClientAddr, bytes: &[u8]) {
        let outs = self.input(c, bytes);
        assert!(outs.is_empty(), "expected nothing, got {outs:?}");
    }
}

struct Response(Vec<u8>);

impl Response {
    fn msg(&self) -> Message<'_> {
        Message::parse(&self.0).expect("valid STUN")
    }
    fn code(&self) -> Option<u16> {
        self.msg().error_code()
    }
    fn nonce(&self) -> String {
        self.msg().text(attr::NONCE).expect("nonce").to_owned()
    }
}

/// A client holding REST credentials and the server's current nonce.
struct Creds {
    username: String,
    password: String,
    nonce: String,
}

impl Creds {
    fn new(id: &str, now: Now, lifetime: u64) -> Self {
        let (username, password) = RestSecret::new(SECRET).mint(id, now.unix_secs(), lifetime);
        Self {
            username,
            password,
            nonce: String::new(),
        }
    }

    fn key(&self) -> [u8; 16] {
        long_term_key(&self.username, REALM, &self.password)
    }

    fn sign(&self, b: MessageBuilder) -> Vec<u8> {
        b.attr(attr::USERNAME, self.username.as_bytes())
            .attr(attr::REALM, REALM.as_bytes())
            .attr(attr::NONCE, self.nonce.as_bytes())
            .integrity(&self.key())
            .fingerprint()
            .finish()
    }
}

fn tid(n: u8) -> stun::TransactionId {
    [n; 12]
}

fn allocate_req(n: u8) -> MessageBuilder {
    MessageBuilder::new(Class::Request, method::ALLOCATE, tid(n))
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
}

/// Allocates for `c` with `creds` (doing the 401 dance) and returns the relay address.
fn allocate(w: &mut World, c: ClientAddr, creds: &mut Creds) -> SocketAddr {
    let challenge = w.request(c, &allocate_req(1).finish());
    assert_eq!(challenge.code(), Some(401));
    assert_eq!(challenge.msg().text(attr::REALM), Some(REALM));
    creds.nonce = challenge.nonce();
    let resp = w.request(c, &creds.sign(allocate_req(2)));
    let msg = resp.msg();
    assert_eq!(
        msg.class,
        Class::Success,
        "allocate failed: {:?}",
        msg.error_code()
    );
    assert!(msg.verify_integrity(&creds.key()));
    assert!(msg.verify_fingerprint());
    assert_eq!(msg.xor_address(attr::XOR_MAPPED_ADDRESS), Some(c.addr));
    assert_eq!(msg.u32(attr::LIFETIME), Some(600));
    msg.xor_address(attr::XOR_RELAYED_ADDRESS)
        .expect("relayed address")
}

fn permission_req(n: u8, peer: SocketAddr) -> MessageBuilder {
    MessageBuilder::new(Class::Request, method::CREATE_PERMISSION, tid(n))
        .xor_address(attr::XOR_PEER_ADDRESS, peer)
}

fn channel_bind_req(n: u8, channel: u16, peer: SocketAddr) -> MessageBuilder {
    MessageBuilder::new(Class::Request, method::CHANNEL_BIND, tid(n))
        .u32(attr::CHANNEL_NUMBER, u32::from(channel) << 16)
        .xor_address(attr::XOR_PEER_ADDRESS, peer)
}

#[test]
fn binding_needs_no_credentials() {
    let mut w = World::new(config());
    let c = client(1000);
    let resp = w.request(
        c,
        &MessageBuilder::new(Class::Request, method::BINDING, tid(9)).finish(),
    );
    let msg = resp.msg();
    assert_eq!((msg.class, msg.method), (Class::Success, method::BINDING));
    assert_eq!(msg.xor_address(attr::XOR_MAPPED_ADDRESS), Some(c.addr));
}

#[test]
fn allocate_permission_and_relay_both_ways() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    let relay = allocate(&mut w, c, &mut creds);
    let peer = public_peer(7000);

    // Without a permission nothing passes, in either direction.
    let send = MessageBuilder::new(Class::Indication, method::SEND, tid(3))
        .xor_address(attr::XOR_PEER_ADDRESS, peer)
        .attr(attr::DATA, b"hello")
        .finish();
    w.silent(c, &send);
    w.turn.handle_peer(w.now, relay, peer, b"sneaky");
    assert!(w.turn.poll_output().is_none());

    let ok = w.request(c, &creds.sign(permission_req(4, peer)));
    assert_eq!(ok.msg().class, Class::Success);
    assert_eq!(
        w.input(c, &send),
        vec![Output::ToPeer {
            relay,
            peer,
            data: b"hello".to_vec()
        }]
    );
    w.turn.handle_peer(w.now, relay, peer, b"back");
    let Some(Output::ToClient { client: to, data }) = w.turn.poll_output() else {
        panic!()
    };
    assert_eq!(to, c);
    let ind = Message::parse(&data).unwrap();
    assert_eq!((ind.class, ind.method), (Class::Indication, method::DATA));
    assert_eq!(ind.xor_address(attr::XOR_PEER_ADDRESS), Some(peer));
    assert_eq!(ind.get(attr::DATA), Some(&b"back"[..]));
    // Payload bytes, not the STUN framing around them; the refused "sneaky" not at all.
    let counts = w.turn.counts();
    assert_eq!((counts.relayed_packets, counts.relayed_bytes), (2, 9));

    // Permissions last 5 minutes.
    w.advance(Duration::from_secs(301));
    w.silent(c, &send);
}

#[test]
fn channels_carry_data_without_stun_headers() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    let relay = allocate(&mut w, c, &mut creds);
    let peer = public_peer(7000);
    assert_eq!(
        w.request(c, &creds.sign(channel_bind_req(5, 0x4001, peer)))
            .msg()
            .class,
        Class::Success
    );
    let mut frame = Vec::new();
    stun::write_channel_data(&mut frame, 0x4001, b"media", false);
    assert_eq!(
        w.input(c, &frame),
        vec![Output::ToPeer {
            relay,
            peer,
            data: b"media".to_vec()
        }]
    );
    w.turn.handle_peer(w.now, relay, peer, b"reply");
    let Some(Output::ToClient { data, .. }) = w.turn.poll_output() else {
        panic!()
    };
    assert_eq!(stun::parse_channel_data(&data), Some((0x4001, &b"reply"[..])));
    // An unbound channel and a bad channel number are refused.
    stun::write_channel_data(&mut frame, 0x4002, b"x", false);
    w.silent(c, &frame);
    assert_eq!(
        w.request(c, &creds.sign(channel_bind_req(6, 0x3FFF, peer)))
            .code(),
        Some(400)
    );
    // The same channel to another peer is refused.
    assert_eq!(
        w.request(c, &creds.sign(channel_bind_req(7, 0x4001, public_peer(7001))))
            .code(),
        Some(400)
    );
}

/// CreatePermission and ChannelBind to each of `ips` get 403.
fn expect_refused(w: &mut World, c: ClientAddr, creds: &Creds, ips: &[&str]) {
    let before = w.turn.counts().refused_peers;
    for (i, ip) in ips.iter().enumerate() {
        let peer = SocketAddr::new(ip.parse().unwrap(), 80);
        let n = i as u8;
        assert_eq!(
            w.request(c, &creds.sign(permission_req(100 + n, peer))).code(),
            Some(403),
            "{ip}"
        );
        assert_eq!(
            w.request(c, &creds.sign(channel_bind_req(150 + n, 0x4000, peer)))
                .code(),
            Some(403),
            "{ip}"
        );
    }
    assert_eq!(w.turn.counts().refused_peers, before + 2 * ips.len() as u64);
}

#[test]
fn refused_peer_ranges_get_403() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    allocate(&mut w, c, &mut creds);
    expect_refused(
        &mut w,
        c,
        &creds,
        &[
            "127.0.0.1",
            "0.0.0.0",
            "10.0.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ],
    );
    // The server's own relay addresses are fine: two clients relayed here can talk. But only
    // those exact addresses: the same IP's other ports stay closed.
    let mut bob = Creds::new("bob", w.now, 3600);
    let c2 = client(2000);
    let bob_relay = allocate(&mut w, c2, &mut bob);
    let ok = w.request(c, &creds.sign(permission_req(60, bob_relay)));
    assert_eq!(ok.msg().class, Class::Success);
    let other_port = SocketAddr::new(bob_relay.ip(), 22);
    assert_eq!(
        w.request(c, &creds.sign(permission_req(61, other_port))).code(),
        Some(403)
    );
    let send = |to: SocketAddr| {
        MessageBuilder::new(Class::Indication, method::SEND, tid(70))
            .xor_address(attr::XOR_PEER_ADDRESS, to)
            .attr(attr::DATA, b"x")
            .finish()
    };
    assert!(matches!(
        w.input(c, &send(bob_relay))[..],
        [Output::ToPeer { .. }]
    ));
    w.silent(c, &send(other_port));
}

#[test]
fn ipv6_peers_including_mapped_loopback_are_refused() {
    let mut config = config();
    // Opening IPv4 loopback must not open its IPv6 forms.
    config.policy.allow.push("127.0.0.0/8".parse::<Cidr>().unwrap());
    let mut w = World {
        turn: TurnServer::new(
            config,
            &["2001:db8::1".parse().unwrap(), "198.51.100.1".parse().unwrap()],
        ),
        ..World::new(self::config())
    };
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    let challenge = w.request(c, &allocate_req(1).finish());
    creds.nonce = challenge.nonce();
    let resp = w.request(
        c,
        &creds.sign(allocate_req(2).attr(attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0])),
    );
    let relay = resp.msg().xor_address(attr::XOR_RELAYED_ADDRESS).unwrap();
    assert!(relay.is_ipv6());
    expect_refused(
        &mut w,
        c,
        &creds,
        &[
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "::ffff:10.0.0.1",
            "::ffff:0.0.0.0",
            "64:ff9b::a00:1",
            // Forms that embed or tunnel to IPv4, and other special-purpose ranges.
            "2002:a00:1::1",
            "2001:0:4136:e378::1",
            "::ffff:0:a00:1",
            "2001:10::1",
            "2001:20::1",
            "3fff::1",
            "5f00::1",
        ],
    );
    // An IPv4 peer on an IPv6 relay is a family mismatch.
    let v4 = w.request(c, &creds.sign(permission_req(40, public_peer(1))));
    assert_eq!(v4.code(), Some(443));
}

#[test]
fn expired_and_forged_credentials_get_401() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut expired = Creds::new("alice", w.now, 60);
    w.advance(Duration::from_secs(61));
    expired.nonce = w.request(c, &allocate_req(1).finish()).nonce();
    assert_eq!(w.request(c, &expired.sign(allocate_req(2))).code(), Some(401));

    let mut forged = Creds::new("mallory", w.now, 3600);
    forged.password = "guessed".into();
    forged.nonce = expired.nonce.clone();
    assert_eq!(w.request(c, &forged.sign(allocate_req(3))).code(), Some(401));
    assert_eq!(w.turn.counts().allocations, 0);
}

#[test]
fn member_credentials_work_while_the_member_stays_and_its_relays_end_when_it_leaves() {
    let mut w = World::new(TurnConfig {
        members: true,
        ..config()
    });
    let (c, other) = (client(1000), client(1001));
    let mut creds = Creds::new(&crate::auth::member_user(7), w.now, 60);
    // Not (yet) a member: even a fresh, correctly signed credential is refused.
    creds.nonce = w.request(c, &allocate_req(1).finish()).nonce();
    assert_eq!(w.request(c, &creds.sign(allocate_req(2))).code(), Some(401));

    w.turn.handle_member_joined(7);
    let relay = allocate(&mut w, c, &mut creds);
    // A call outlasts the credential: once it has expired, the member's allocation is still
    // refreshed and given permissions...
    w.now = w.now.after(Duration::from_secs(300));
    let refresh = MessageBuilder::new(Class::Request, method::REFRESH, tid(20)).u32(attr::LIFETIME, 600);
    let stale = w.request(c, &creds.sign(refresh));
    creds.nonce = stale.nonce();
    let refresh = MessageBuilder::new(Class::Request, method::REFRESH, tid(21)).u32(attr::LIFETIME, 600);
    assert_eq!(w.request(c, &creds.sign(refresh)).msg().class, Class::Success);
    let permission = w.request(c, &creds.sign(permission_req(22, public_peer(9))));
    assert_eq!(permission.msg().class, Class::Success);
    // ...but it allocates nothing new (the member gets fresh credentials for that).
    let mut late = Creds::new(&crate::auth::member_user(7), w.now, 0);
    late.password = creds.password.clone();
    late.username = creds.username.clone();
    late.nonce = w.request(other, &allocate_req(23).finish()).nonce();
    assert_eq!(w.request(other, &late.sign(allocate_req(24))).code(), Some(401));

    // The member leaves: its relay closes at once and its credentials stop working.
    w.turn.handle_member_left(7);
    assert_eq!(w.turn.poll_output(), Some(Output::CloseRelay { relay }));
    assert_eq!(w.turn.counts().allocations, 0);
    let mut fresh = Creds::new(&crate::auth::member_user(7), w.now, 600);
    fresh.nonce = creds.nonce.clone();
    assert_eq!(w.request(c, &fresh.sign(allocate_req(25))).code(), Some(401));
    // Credentials minted by the operator for other users keep working by expiry alone.
    let mut operator = Creds::new("backend", w.now, 600);
    allocate(&mut w, c, &mut operator);
}

#[test]
fn nonces_go_stale_with_438_and_a_fresh_nonce() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 7200);
    let relay = allocate(&mut w, c, &mut creds);
    w.advance(Duration::from_secs(121));
    let refresh = || MessageBuilder::new(Class::Request, method::REFRESH, tid(20)).u32(attr::LIFETIME, 600);
    let stale = w.request(c, &creds.sign(refresh()));
    assert_eq!(stale.code(), Some(438));
    creds.nonce = stale.nonce();
    let ok = w.request(c, &creds.sign(refresh()));
    assert_eq!(ok.msg().class, Class::Success);
    assert!(w.turn.allocations.contains_key(&relay));
}

#[test]
fn allocations_expire_unless_refreshed_and_refresh_zero_deletes() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 7200);
    let relay = allocate(&mut w, c, &mut creds);
    assert_eq!(w.turn.poll_timeout(), Some(w.now.mono + Duration::from_secs(600)));
    w.now = w.now.after(Duration::from_secs(600));
    w.turn.handle_timeout(w.now);
    assert_eq!(w.turn.poll_output(), Some(Output::CloseRelay { relay }));
    assert_eq!(w.turn.counts().allocations, 0);

    let relay = allocate(&mut w, c, &mut creds);
    let delete = MessageBuilder::new(Class::Request, method::REFRESH, tid(21)).u32(attr::LIFETIME, 0);
    let outs = w.input(c, &creds.sign(delete));
    assert_eq!(outs[0], Output::CloseRelay { relay });
    assert_eq!(
        w.turn.counts(),
        TurnCounts {
            relayed_packets: 0,
            dropped_packets: 0,
            ..TurnCounts::default()
        }
    );
}

#[test]
fn lifetime_is_capped() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 7200);
    creds.nonce = w.request(c, &allocate_req(1).finish()).nonce();
    let resp = w.request(c, &creds.sign(allocate_req(2).u32(attr::LIFETIME, 86_400)));
    assert_eq!(resp.msg().u32(attr::LIFETIME), Some(3600));
}

#[test]
fn quotas_per_user_and_in_total() {
    let mut w = World::new(config());
    let mut alice = Creds::new("alice", w.now, 3600);
    for port in 1..=3 {
        allocate(&mut w, client(port), &mut alice);
    }
    let over = w.request(client(4), &alice.sign(allocate_req(2)));
    assert_eq!(over.code(), Some(486));
    let mut bob = Creds::new("bob", w.now, 3600);
    allocate(&mut w, client(5), &mut bob);
    allocate(&mut w, client(6), &mut bob);
    let full = w.request(client(7), &bob.sign(allocate_req(2)));
    assert_eq!(full.code(), Some(508));
}

#[test]
fn even_port_is_honoured() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    creds.nonce = w.request(c, &allocate_req(1).finish()).nonce();
    let resp = w.request(c, &creds.sign(allocate_req(2).attr(attr::EVEN_PORT, &[0x80])));
    let relay = resp.msg().xor_address(attr::XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(relay.port() % 2, 0);
}

#[test]
fn second_allocate_on_one_5_tuple_is_a_mismatch_but_a_retransmit_is_answered() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    let relay = allocate(&mut w, c, &mut creds);
    let again = w.request(c, &creds.sign(allocate_req(2)));
    assert_eq!(
        again.msg().xor_address(attr::XOR_RELAYED_ADDRESS),
        Some(relay),
        "same transaction"
    );
    assert_eq!(w.request(c, &creds.sign(allocate_req(3))).code(), Some(437));
}

#[test]
fn another_user_cannot_use_an_allocation() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut alice = Creds::new("alice", w.now, 3600);
    allocate(&mut w, c, &mut alice);
    let mut eve = Creds::new("eve", w.now, 3600);
    eve.nonce = alice.nonce.clone();
    assert_eq!(
        w.request(c, &eve.sign(permission_req(8, public_peer(1)))).code(),
        Some(441)
    );
}

#[test]
fn bad_requests_get_specific_errors() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    creds.nonce = w.request(c, &allocate_req(1).finish()).nonce();
    let no_transport = MessageBuilder::new(Class::Request, method::ALLOCATE, tid(2));
    assert_eq!(w.request(c, &creds.sign(no_transport)).code(), Some(400));
    let tcp = MessageBuilder::new(Class::Request, method::ALLOCATE, tid(3))
        .attr(attr::REQUESTED_TRANSPORT, &[6, 0, 0, 0]);
    assert_eq!(w.request(c, &creds.sign(tcp)).code(), Some(442));
    let unknown = allocate_req(4).attr(0x0022, &[0; 8]); // RESERVATION-TOKEN: not supported
    let resp = w.request(c, &creds.sign(unknown));
    assert_eq!(resp.code(), Some(420));
    assert_eq!(resp.msg().get(attr::UNKNOWN_ATTRIBUTES), Some(&[0x00, 0x22][..]));
    let v6 = allocate_req(5).attr(attr::REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0]);
    assert_eq!(w.request(c, &creds.sign(v6)).code(), Some(440));
    assert_eq!(
        w.request(c, &creds.sign(permission_req(6, public_peer(1))))
            .code(),
        Some(437),
        "no allocation"
    );
    // Garbage is dropped silently.
    w.silent(c, b"\x00\x01\x00\x04\x21\x12\xa4\x42garbage");
    w.silent(c, &[0xff; 40]);
}

#[test]
fn unauthenticated_requests_are_rate_limited() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut answered = 0;
    for n in 0..50 {
        w.turn.handle_client(w.now, c, &allocate_req(n).finish());
        while w.turn.poll_output().is_some() {
            answered += 1;
        }
    }
    assert_eq!(answered, 10, "the burst, then silence");
    w.advance(Duration::from_secs(1));
    assert_eq!(
        w.request(c, &allocate_req(99).finish()).code(),
        Some(401),
        "refilled at 5/s"
    );
    // Another address is not affected.
    let other = ClientAddr {
        addr: SocketAddr::from(([203, 0, 113, 11], 1)),
        ..c
    };
    assert_eq!(w.request(other, &allocate_req(1).finish()).code(), Some(401));
}

#[test]
fn idle_rate_limit_buckets_are_swept_when_there_are_too_many() {
    let mut w = World::new(config());
    let t0 = w.now.mono;
    let from = |i: usize| ClientAddr {
        transport: Transport::Udp,
        addr: SocketAddr::from(((0x0A00_0000 + u32::try_from(i).unwrap()).to_be_bytes(), 1)),
    };
    let challenge = |w: &mut World, i: usize| {
        w.turn.handle_client(w.now, from(i), &allocate_req(1).finish());
        while w.turn.poll_output().is_some() {}
    };
    for i in 0..UNAUTH_BUCKETS_KEPT {
        challenge(&mut w, i);
    }
    assert_eq!(
        w.turn.poll_timeout(),
        None,
        "a bucket per client IP is fine up to the limit"
    );
    challenge(&mut w, UNAUTH_BUCKETS_KEPT);
    assert_eq!(w.turn.poll_timeout(), Some(t0 + UNAUTH_SWEEP_INTERVAL));

    // An edge that sleeps exactly until poll_timeout: the first sweep finds nothing idle yet
    // and comes back when the oldest bucket can go.
    w.now = w.now.at(w.turn.poll_timeout().unwrap());
    w.turn.handle_timeout(w.now);
    assert_eq!(w.turn.unauth.len(), UNAUTH_BUCKETS_KEPT + 1);
    assert_eq!(w.turn.poll_timeout(), Some(t0 + UNAUTH_IDLE));

    // One client keeps going; the idle ones are forgotten and the sweeping stops.
    w.now = w.now.at(t0 + Duration::from_secs(5));
    challenge(&mut w, 0);
    w.now = w.now.at(w.turn.poll_timeout().unwrap());
    w.turn.handle_timeout(w.now);
    assert_eq!(w.turn.unauth.len(), 1);
    assert!(w.turn.unauth.contains_key(&from(0).addr.ip()));
    assert_eq!(w.turn.poll_timeout(), None);
}

#[test]
fn refresh_moves_the_expiry_deadline() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 7200);
    let relay = allocate(&mut w, c, &mut creds);
    w.advance(Duration::from_secs(60));
    let refresh = MessageBuilder::new(Class::Request, method::REFRESH, tid(20)).u32(attr::LIFETIME, 1200);
    assert_eq!(
        w.request(c, &creds.sign(refresh)).msg().u32(attr::LIFETIME),
        Some(1200)
    );
    assert_eq!(
        w.turn.poll_timeout(),
        Some(w.now.mono + Duration::from_secs(1200))
    );
    w.advance(Duration::from_secs(1199));
    assert!(w.turn.allocations.contains_key(&relay));
    w.advance(Duration::from_secs(1));
    assert_eq!(w.turn.poll_output(), Some(Output::CloseRelay { relay }));
    assert_eq!(w.turn.poll_timeout(), None);
}

#[test]
fn bandwidth_cap_drops_the_excess() {
    let mut w = World::new(config()); // 100 kB/s, bursts of 64 KiB (the larger of the two)
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    allocate(&mut w, c, &mut creds);
    let peer = public_peer(7000);
    w.request(c, &creds.sign(channel_bind_req(5, 0x4001, peer)));
    let mut frame = Vec::new();
    stun::write_channel_data(&mut frame, 0x4001, &[0; 1000], false);
    let mut passed = 0;
    for _ in 0..300 {
        passed += w.input(c, &frame).len();
    }
    assert_eq!(passed, 100, "100 kB in the first instant");
    w.advance(Duration::from_millis(100));
    let after: usize = (0..300).map(|_| w.input(c, &frame).len()).sum();
    assert_eq!(after, 10, "10 kB per 100 ms");
    assert!(w.turn.counts().dropped_packets >= 490);
}

#[test]
fn closing_a_tcp_client_frees_its_allocation() {
    let mut w = World::new(config());
    let c = ClientAddr {
        transport: Transport::Tcp,
        addr: SocketAddr::from(([203, 0, 113, 10], 9)),
    };
    let mut creds = Creds::new("alice", w.now, 3600);
    let relay = allocate(&mut w, c, &mut creds);
    w.turn.handle_client_closed(c);
    assert_eq!(w.turn.poll_output(), Some(Output::CloseRelay { relay }));
    assert_eq!(w.turn.counts().users, 0);
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary datagrams — raw bytes, or STUN headers with arbitrary attributes — from
        /// arbitrary clients, mixed with timer ticks, never panic the core, and the counts it
        /// reports stay consistent with its allocations.
        #[test]
        fn arbitrary_input_never_panics(
            inputs in proptest::collection::vec(
                (0u16..4, any::<bool>(), any::<u16>(), proptest::collection::vec(any::<u8>(), 0..120)),
                1..40,
            )
        ) {
            let mut w = World::new(config());
            let mut creds = Creds::new("alice", w.now, 3600);
            let relay = allocate(&mut w, client(0), &mut creds);
            for (port, stun_header, method_bits, body) in inputs {
                let bytes = if stun_header {
                    let mut raw = MessageBuilder::new(Class::Request, method_bits & 0x0FFF, [5; 12]).finish();
                    let len = body.len() / 4 * 4;
                    raw.extend_from_slice(&body[..len]);
                    raw[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                    raw
                } else {
                    body
                };
                w.input(client(port), &bytes);
                w.turn.handle_peer(w.now, relay, public_peer(port), &bytes);
                w.advance(Duration::from_secs(u64::from(method_bits % 4)));
                while w.turn.poll_output().is_some() {}
                let counts = w.turn.counts();
                prop_assert!(counts.allocations <= 1 + 4);
                prop_assert_eq!(counts.allocations, w.turn.by_client.len());
            }
        }
    }
}

#[test]
fn the_servers_own_addresses_are_refused_but_for_exact_relays() {
    let mut config = config();
    // Even where the policy allows its range, the server's own address is not a peer: its
    // other ports are the server's own services.
    config
        .policy
        .allow
        .push("198.51.100.0/24".parse::<Cidr>().unwrap());
    let mut w = World::new(config);
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    allocate(&mut w, c, &mut creds);
    let own = SocketAddr::from(([198, 51, 100, 1], 8080));
    assert_eq!(
        w.request(c, &creds.sign(permission_req(50, own))).code(),
        Some(403)
    );
    let neighbour = SocketAddr::from(([198, 51, 100, 2], 8080));
    assert_eq!(
        w.request(c, &creds.sign(permission_req(51, neighbour)))
            .msg()
            .class,
        Class::Success
    );
}

#[test]
fn the_servers_own_services_are_peers_exactly_where_the_policy_denies_their_range() {
    // The SFU on loopback (a test, or a LAN): relayed browsers reach it, and nothing else on
    // loopback, not even its other ports.
    let sfu = SocketAddr::from(([127, 0, 0, 1], 3479));
    let mut w = World::new(TurnConfig {
        services: vec![sfu],
        ..config()
    });
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    let relay = allocate(&mut w, c, &mut creds);
    let ok = w.request(c, &creds.sign(permission_req(60, sfu)));
    assert_eq!(ok.msg().class, Class::Success);
    let send = |peer: SocketAddr| {
        MessageBuilder::new(Class::Indication, method::SEND, tid(70))
            .xor_address(attr::XOR_PEER_ADDRESS, peer)
            .attr(attr::DATA, b"stun")
            .finish()
    };
    assert_eq!(
        w.input(c, &send(sfu)),
        vec![Output::ToPeer {
            relay,
            peer: sfu,
            data: b"stun".to_vec()
        }]
    );
    // The permission is for that port alone: the rest of loopback stays shut.
    w.silent(c, &send(SocketAddr::from(([127, 0, 0, 1], 22))));
    w.turn
        .handle_peer(w.now, relay, SocketAddr::from(([127, 0, 0, 1], 22)), b"no");
    assert!(w.turn.poll_output().is_none());
    expect_refused(&mut w, c, &creds, &["127.0.0.1", "10.0.0.1"]);
    let ok = w.request(c, &creds.sign(channel_bind_req(80, 0x4001, sfu)));
    assert_eq!(ok.msg().class, Class::Success);
}

#[test]
fn allocations_are_limited_per_client_address_whatever_the_user() {
    let mut config = config();
    config.ip_quota = 2;
    config.user_quota = 10;
    config.total_quota = 10;
    let mut w = World::new(config);
    // Everyone who joins gets credentials: an attacker has as many users as it likes.
    for (port, user) in [(1, "u1"), (2, "u2")] {
        let mut creds = Creds::new(user, w.now, 3600);
        allocate(&mut w, client(port), &mut creds);
    }
    let mut third = Creds::new("u3", w.now, 3600);
    third.nonce = w.request(client(3), &allocate_req(1).finish()).nonce();
    assert_eq!(
        w.request(client(3), &third.sign(allocate_req(2))).code(),
        Some(486)
    );
    // Another address is not affected.
    let elsewhere = ClientAddr {
        addr: SocketAddr::from(([203, 0, 113, 11], 1)),
        ..client(1)
    };
    allocate(&mut w, elsewhere, &mut third);
}

#[test]
fn binding_requests_are_answered_within_the_unauthenticated_budget() {
    let mut w = World::new(config());
    let c = client(1000);
    let mut answered = 0;
    for n in 0..50 {
        let binding = MessageBuilder::new(Class::Request, method::BINDING, tid(n)).finish();
        w.turn.handle_client(w.now, c, &binding);
        while w.turn.poll_output().is_some() {
            answered += 1;
        }
    }
    assert_eq!(
        answered, 10,
        "a forged source address cannot make it answer a flood"
    );
}

#[test]
fn an_allocation_holds_a_bounded_number_of_permissions_and_channels() {
    let mut w = World::new(config()); // at most 8
    let c = client(1000);
    let mut creds = Creds::new("alice", w.now, 3600);
    allocate(&mut w, c, &mut creds);
    for i in 0..8u8 {
        let peer = SocketAddr::from(([8, 8, 8, i], 1));
        assert_eq!(
            w.request(c, &creds.sign(permission_req(10 + i, peer)))
                .msg()
                .class,
            Class::Success
        );
    }
    let ninth = SocketAddr::from(([8, 8, 8, 100], 1));
    assert_eq!(
        w.request(c, &creds.sign(permission_req(30, ninth))).code(),
        Some(508)
    );
    // Renewing one it has is fine; so is a channel to a peer it has a permission for.
    let known = SocketAddr::from(([8, 8, 8, 0], 1));
    assert_eq!(
        w.request(c, &creds.sign(permission_req(31, known))).msg().class,
        Class::Success
    );
    assert_eq!(
        w.request(c, &creds.sign(channel_bind_req(32, 0x4000, known)))
            .msg()
            .class,
        Class::Success
    );
    assert_eq!(
        w.request(c, &creds.sign(channel_bind_req(33, 0x4001, ninth)))
            .code(),
        Some(508)
    );
    // Expired permissions make room (after a fresh nonce: the old one went stale meanwhile).
    w.advance(Duration::from_secs(301));
    let stale = w.request(c, &creds.sign(permission_req(34, ninth)));
    assert_eq!(stale.code(), Some(438));
    creds.nonce = stale.nonce();
    assert_eq!(
        w.request(c, &creds.sign(permission_req(35, ninth))).msg().class,
        Class::Success
    );
}

#[test]
fn another_clients_relay_cannot_pass_for_the_permitted_one() {
    let mut w = World::new(config());
    let (victim, a, stranger) = (client(1000), client(2000), client(3000));
    let mut creds = Creds::new("victim", w.now, 3600);
    let victim_relay = allocate(&mut w, victim, &mut creds);
    let (mut creds_a, mut creds_b) = (Creds::new("a", w.now, 3600), Creds::new("b", w.now, 3600));
    let relay_a = allocate(&mut w, a, &mut creds_a);
    let relay_b = allocate(&mut w, stranger, &mut creds_b);
    // The victim talks to A's relay: an exact permission for that address.
    let ok = w.request(victim, &creds.sign(permission_req(40, relay_a)));
    assert_eq!(ok.msg().class, Class::Success);
    let counts = w.turn.counts();
    // B's relay shares the server's IP, but is not the permitted address: dropped, uncharged.
    w.turn.handle_peer(w.now, victim_relay, relay_b, &[0u8; 1000]);
    assert!(w.turn.poll_output().is_none());
    assert_eq!(w.turn.counts().dropped_packets, counts.dropped_packets + 1);
    w.turn.handle_peer(w.now, victim_relay, relay_a, &[0u8; 1000]);
    assert!(matches!(w.turn.poll_output(), Some(Output::ToClient { client, .. }) if client == victim));
}
