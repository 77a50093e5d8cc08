//! The embedded STUN/TURN server against a real TURN client (coturn's `turnutils_uclient`),
//! and against raw STUN over a real UDP socket for the exact error codes.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use visavis_protocol::ServerMsg;
use visavis_turn::stun::{attr, method, Class, Message, MessageBuilder};
use visavis_turn::{long_term_key, RestSecret};

use super::Server;

const SECRET: &str = "it-secret";

/// A visavis with its TURN server on `ip` (an ephemeral port); returns it and the port.
async fn turn_server(ip: &str, extra: &[&str]) -> (Server, u16) {
    let listen = format!("{ip}:0");
    let mut args = vec!["--turn-listen", &listen, "--turn-secret", SECRET];
    args.extend_from_slice(extra);
    let server = Server::start(&args).await;
    let port = server.turn.expect("TURN is on").udp.port();
    (server, port)
}

/// Runs `turnutils_uclient` (bounded to 60 s) and returns everything it printed.
async fn uclient(args: Vec<String>) -> String {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("timeout")
            .arg("60")
            .arg("turnutils_uclient")
            .args(&args)
            .output()
            .expect("turnutils_uclient is installed (Debian package coturn)");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .await
    .expect("uclient task")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// The last `name=N` in uclient's output.
fn last_count(output: &str, name: &str) -> u64 {
    output
        .rsplit(&format!("{name}="))
        .next()
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in:\n{output}"))
}

#[tokio::test]
async fn uclient_relays_over_udp_and_tcp_with_zero_loss() {
    let (server, port) = turn_server("127.0.0.1", &[]).await;
    let port = port.to_string();
    for tcp in [false, true] {
        // -y: the clients send to each other's relay addresses; -c: no RTCP pairs.
        let mut a = args(&[
            "-y", "-c", "-n", "100", "-m", "4", "-l", "500", "-W", SECRET, "-u", "it", "-p", &port,
        ]);
        if tcp {
            a.insert(0, "-t".into());
        }
        a.push("127.0.0.1".into());
        let out = uclient(a).await;
        let sent = last_count(&out, "tot_send_msgs");
        let received = last_count(&out, "tot_recv_msgs");
        assert!(sent >= 400, "tcp={tcp}: sent only {sent}:\n{out}");
        assert_eq!(sent, received, "tcp={tcp}: loss:\n{out}");
        assert!(out.contains("Total lost packets 0 "), "tcp={tcp}:\n{out}");
    }
    // TCP clients' allocations end with their connections.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counts = server.counts().await;
    assert!(counts["turnAllocations"].as_u64().is_some(), "{counts}");
}

/// uclient, through a TURN server on `ip`, asks to reach each of `peers`: each gets 403 and
/// nothing is relayed.
async fn expect_peers_refused(ip: &str, peers: &[&str]) {
    let (_server, port) = turn_server(ip, &[]).await;
    let (port, server_ip) = (port.to_string(), ip.trim_matches(|c| c == '[' || c == ']'));
    for peer in peers {
        let out = uclient(args(&[
            "-c", "-n", "2", "-W", SECRET, "-u", "it", "-p", &port, "-e", peer, server_ip,
        ]))
        .await;
        assert!(out.contains("error 403"), "{peer} was not refused:\n{out}");
        assert!(
            !out.contains("tot_recv_msgs=1") && !out.contains("tot_recv_msgs=2"),
            "{peer}:\n{out}"
        );
    }
}

#[tokio::test]
async fn uclient_is_refused_loopback_private_and_unspecified_peers() {
    expect_peers_refused(
        "127.0.0.1",
        &[
            "127.0.0.1",
            "0.0.0.0",
            "10.0.0.1",
            "192.168.0.1",
            "169.254.169.254",
        ],
    )
    .await;
}

#[tokio::test]
async fn uclient_is_refused_ipv6_loopback_and_mapped_ipv4_loopback() {
    // An IPv6 relay, so IPv6 peers are of the right family and the policy decides.
    expect_peers_refused(
        "[::1]",
        &[
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:0.0.0.0",
            "::",
            "fe80::1",
            "fd00::1",
        ],
    )
    .await;
}

#[tokio::test]
async fn uclient_quota_exceeded_gets_486() {
    let (_server, port) = turn_server("127.0.0.1", &["--turn-user-quota", "1"]).await;
    let out = uclient(args(&[
        "-y",
        "-c",
        "-n",
        "2",
        "-m",
        "2",
        "-W",
        SECRET,
        "-u",
        "it",
        "-p",
        &port.to_string(),
        "127.0.0.1",
    ]))
    .await;
    assert!(out.contains("error 486"), "{out}");
}

#[tokio::test]
async fn uclient_relays_over_tls() {
    let dir = std::env::temp_dir().join(format!("visavis-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let (cert, key) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let (server, _) = turn_server(
        "127.0.0.1",
        &[
            "--turn-tls-cert",
            &cert,
            "--turn-tls-key",
            &key,
            "--turn-tls-listen",
            "127.0.0.1:0",
        ],
    )
    .await;
    let tls_port = server.turn.and_then(|t| t.tls).expect("TLS listener").port();
    let out = uclient(args(&[
        "-S",
        "-t",
        "-y",
        "-c",
        "-n",
        "50",
        "-m",
        "2",
        "-W",
        SECRET,
        "-u",
        "it",
        "-p",
        &tls_port.to_string(),
        "127.0.0.1",
    ]))
    .await;
    let sent = last_count(&out, "tot_send_msgs");
    assert!(sent >= 100, "{out}");
    assert_eq!(sent, last_count(&out, "tot_recv_msgs"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

// The raw client blocks on its socket, so the server needs threads of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_get_credentials_renewed_while_they_stay_and_their_relays_end_when_they_leave() {
    let (server, port) = turn_server("127.0.0.1", &["--turn-credential-lifetime", "10"]).await;
    let (_c, _) = server.joined("r", "A").await;
    let mut c = server.client().await;
    c.send(super::join("r2", "B")).await;
    let ice = expect!(c, ServerMsg::Joined { ice_servers, .. } => ice_servers);
    assert_eq!(
        ice[0].urls,
        [
            format!("stun:127.0.0.1:{port}"),
            format!("turn:127.0.0.1:{port}?transport=udp"),
            format!("turn:127.0.0.1:{port}?transport=tcp"),
        ]
    );
    let username = ice[0].username.clone().expect("username");
    let password = ice[0].credential.clone().expect("credential");
    let expiry = |username: &str| -> u64 { username.split(':').next().unwrap().parse().unwrap() };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    assert!((now + 9..=now + 10).contains(&expiry(&username)), "{username}");
    assert_eq!(password, RestSecret::new(SECRET).password(&username));

    // That credential allocates on the real server.
    let mut turn = RawClient::new(port);
    let nonce = turn.challenge();
    let resp = turn.allocate(&username, &password, &nonce);
    assert_eq!(resp.0, Class::Success, "code {:?}", resp.1);

    // Half-way through its lifetime, fresh credentials come over signalling.
    // Read without `recv`'s own 5 s limit: the renewal is due 5 s after joining, and a busy
    // machine may deliver it a little later.
    let renewed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let received = c.client.recv_received().await.expect("a message in sequence");
            if let ServerMsg::IceServers { ice_servers } = received.msg {
                break ice_servers;
            }
        }
    })
    .await
    .expect("ice_servers within 15 s");
    let fresh = renewed[0].username.clone().expect("username");
    assert!(expiry(&fresh) >= expiry(&username) + 4, "{username} then {fresh}");
    assert_eq!(renewed[0].urls, ice[0].urls);

    // B leaves: its relay ends at once and its (still unexpired) credentials stop working.
    assert_eq!(server.counts().await["turnAllocations"], 1);
    c.send(visavis_protocol::RoomMsg::Leave).await;
    next_of!(c, ServerMsg::Left { .. });
    assert_eq!(server.counts().await["turnAllocations"], 0);
    let mut again = RawClient::new(port);
    let nonce = again.challenge();
    let fresh_password = renewed[0].credential.clone().expect("credential");
    assert_eq!(
        again.allocate(&fresh, &fresh_password, &nonce),
        (Class::Error, Some(401))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_forged_credentials_get_401_and_binding_works_unauthenticated() {
    let (_server, port) = turn_server("127.0.0.1", &[]).await;
    let mut turn = RawClient::new(port);
    let binding = MessageBuilder::new(Class::Request, method::BINDING, [1; 12]).finish();
    let reply = turn.roundtrip(&binding);
    let msg = Message::parse(&reply).expect("stun");
    assert_eq!(msg.class, Class::Success);
    assert_eq!(msg.xor_address(attr::XOR_MAPPED_ADDRESS), Some(turn.local));

    let nonce = turn.challenge();
    let expired = RestSecret::new(SECRET).mint("it", 1_000, 60); // expired in 1970
    assert_eq!(
        turn.allocate(&expired.0, &expired.1, &nonce),
        (Class::Error, Some(401))
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let (username, _) = RestSecret::new(SECRET).mint("it", now, 600);
    let forged = RestSecret::new("not-the-secret").password(&username);
    assert_eq!(
        turn.allocate(&username, &forged, &nonce),
        (Class::Error, Some(401))
    );
    assert_eq!(
        turn.allocate(&username, &forged, "0-forged"),
        (Class::Error, Some(438))
    );

    // uclient with an expired credential cannot allocate either.
    let pw = RestSecret::new(SECRET).password("1000:it");
    let out = uclient(args(&[
        "-y",
        "-c",
        "-n",
        "2",
        "-u",
        "1000:it",
        "-w",
        &pw,
        "-p",
        &port.to_string(),
        "127.0.0.1",
    ]))
    .await;
    assert!(out.contains("Cannot complete Allocation"), "{out}");
}

/// Just enough of a TURN client over a real UDP socket to check error codes exactly.
pub struct RawClient {
    socket: UdpSocket,
    local: SocketAddr,
    next: u8,
}

impl RawClient {
    pub fn new(port: u16) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.connect(("127.0.0.1", port)).expect("connect");
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let local = socket.local_addr().expect("addr");
        Self {
            socket,
            local,
            next: 1,
        }
    }

    fn roundtrip(&mut self, request: &[u8]) -> Vec<u8> {
        self.socket.send(request).expect("send");
        let mut buf = vec![0; 2048];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("no answer from the TURN server");
        buf.truncate(n);
        buf
    }

    fn tid(&mut self) -> [u8; 12] {
        self.next += 1;
        [self.next; 12]
    }

    /// An unauthenticated Allocate: the 401 challenge's nonce.
    pub fn challenge(&mut self) -> String {
        let req = allocate_request(self.tid(), None);
        challenge_nonce(&self.roundtrip(&req))
    }

    pub fn allocate(&mut self, username: &str, password: &str, nonce: &str) -> (Class, Option<u16>) {
        let req = allocate_request(self.tid(), Some((username, password, nonce)));
        let reply = self.roundtrip(&req);
        let msg = Message::parse(&reply).expect("stun");
        (msg.class, msg.error_code())
    }
}

/// An Allocate request for a UDP relay, with the long-term credentials `(username, password,
/// nonce)` or without any (to be challenged).
pub fn allocate_request(tid: [u8; 12], auth: Option<(&str, &str, &str)>) -> Vec<u8> {
    let request = MessageBuilder::new(Class::Request, method::ALLOCATE, tid)
        .attr(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    let Some((username, password, nonce)) = auth else {
        return request.finish();
    };
    let key = long_term_key(username, "visavis", password);
    request
        .attr(attr::USERNAME, username.as_bytes())
        .attr(attr::REALM, b"visavis")
        .attr(attr::NONCE, nonce.as_bytes())
        .integrity(&key)
        .fingerprint()
        .finish()
}

/// The nonce of a 401 answer to an unauthenticated request.
pub fn challenge_nonce(reply: &[u8]) -> String {
    let msg = Message::parse(reply).expect("stun");
    assert_eq!(msg.error_code(), Some(401));
    msg.text(attr::NONCE).expect("nonce").to_owned()
}
