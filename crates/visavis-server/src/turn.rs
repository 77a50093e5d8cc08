//! The embedded STUN/TURN server's IO: the UDP socket, TCP and TLS listeners, one UDP socket
//! per relay allocation, and a timer sleeping until the core's `poll_timeout`, all feeding the
//! sans-IO `visavis_turn::TurnServer`.
//!
//! Every input takes the core's lock, feeds it and collects its outputs; sockets to send on
//! are cloned out and the sends happen after the lock is released. Sends are non-blocking:
//! a full UDP buffer drops the packet (UDP semantics), a full TCP outbox closes that client.
//! An input that brings the core's next deadline forward wakes the timer to sleep less.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use visavis_signal::MemberEvent;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use visavis_sansio::Now;
use visavis_turn::{stun, ClientAddr, Output, Transport, TurnConfig, TurnCounts, TurnServer};

use crate::fd_budget::{FdPool, FdSlot};
use crate::per_ip::PerIp;

/// Socket buffers as coturn asks for them, so bursts are not dropped by the kernel.
const UDP_BUFFER: usize = 2 * 1024 * 1024;
/// Frames queued for one TCP/TLS client before it is disconnected (bytes are bounded too, by
/// [`TcpLimits::outbox_bytes`]).
const STREAM_QUEUE: usize = 1024;
/// How long writing one frame to a TCP/TLS client may take before it counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest STUN message or ChannelData frame accepted over TCP.
const MAX_FRAME: usize = 64 * 1024;

/// Where and how the embedded TURN server runs.
#[derive(Debug, Clone)]
pub struct TurnSetup {
    pub listen: SocketAddr,
    pub tls: Option<(SocketAddr, Arc<tokio_rustls::rustls::ServerConfig>)>,
    /// Relay sockets bind here (the listen IP).
    pub bind_ip: IpAddr,
    /// Relay candidates advertise this IP.
    pub public_ip: IpAddr,
    pub relay_ports: (u16, u16),
    pub core: TurnConfig,
    pub tcp: TcpLimits,
    /// Descriptors the TURN server may hold: relay sockets and TCP/TLS clients.
    pub fds: Arc<FdPool>,
}

/// Limits of TURN clients over TCP and TLS.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// A client that sends nothing for this long is disconnected (WebRTC's consent checks
    /// go out every few seconds while a relay is in use).
    pub idle: Duration,
    /// Bytes queued for one client before it is disconnected as not reading.
    pub outbox_bytes: usize,
    /// Connections one address may hold.
    pub per_ip: usize,
}

/// The running server's shared state.
#[derive(Debug)]
pub struct Turn {
    inner: Mutex<Inner>,
    udp: Arc<UdpSocket>,
    bind_ip: IpAddr,
    public_ip: IpAddr,
    relay_ports: (u16, u16),
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Wakes `run_timers` when an input moved the core's next deadline earlier.
    timer: Notify,
    tcp: TcpLimits,
    fds: Arc<FdPool>,
    /// TCP and TLS connections per client address.
    tcp_per_ip: PerIp,
}

/// What waits to be written to one TCP/TLS client: frames, and their bytes, which the writer
/// gives back as it writes them.
#[derive(Debug)]
struct Outbox {
    frames: mpsc::Sender<Vec<u8>>,
    bytes: Arc<AtomicUsize>,
}

impl Outbox {
    /// Queues `frame`, unless that would go over `limit` bytes or the frame count: then the
    /// client is not reading and must go.
    fn push(&self, frame: Vec<u8>, limit: usize) -> bool {
        let len = frame.len();
        let queued = self.bytes.fetch_add(len, Ordering::Relaxed) + len;
        if queued > limit || self.frames.try_send(frame).is_err() {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

#[derive(Debug)]
struct Inner {
    core: TurnServer,
    /// Relay sockets by their advertised address.
    relays: HashMap<SocketAddr, Relay>,
    /// TCP and TLS clients' outboxes.
    streams: HashMap<SocketAddr, Outbox>,
    next_port: u16,
}

#[derive(Debug)]
struct Relay {
    socket: Arc<UdpSocket>,
    task: AbortHandle,
    _fd: FdSlot,
}

/// One TCP/TLS client's place in TURN's limits: its address's count and a descriptor of
/// TURN's share. Both are freed when it is dropped.
#[derive(Debug)]
pub struct StreamSlot {
    _ip: crate::per_ip::Slot,
    _fd: FdSlot,
}

/// The local addresses the server ended up on (port 0 resolved), for logs and tests.
#[derive(Debug, Clone, Copy)]
pub struct TurnAddrs {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: Option<SocketAddr>,
}

/// A UDP socket with coturn-sized buffers, non-blocking, for tokio.
fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::DGRAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // The kernel caps these at net.core.[rw]mem_max; asking is all we can do unprivileged.
    let _ = socket.set_recv_buffer_size(UDP_BUFFER);
    let _ = socket.set_send_buffer_size(UDP_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

impl Turn {
    /// Binds the listeners and starts serving until `shutdown`.
    pub async fn start(
        setup: TurnSetup,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Arc<Self>, TurnAddrs)> {
        // UDP and TCP on the same port, so one URL host:port serves both. With port 0 the UDP
        // port the kernel picks may be taken for TCP; then pick again.
        let mut attempts = 0;
        let (udp, tcp) = loop {
            let udp =
                udp_socket(setup.listen).with_context(|| format!("cannot bind TURN UDP {}", setup.listen))?;
            let port = udp.local_addr()?.port();
            match TcpListener::bind(SocketAddr::new(setup.listen.ip(), port)).await {
                Ok(tcp) => break (udp, tcp),
                Err(_) if setup.listen.port() == 0 && attempts < 20 => attempts += 1,
                Err(err) => {
                    return Err(err).with_context(|| format!("cannot bind TURN TCP {}", setup.listen))
                }
            }
        };
        let udp_addr = udp.local_addr()?;
        let tcp_addr = tcp.local_addr()?;
        let tls = match &setup.tls {
            Some((addr, config)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot bind TURN TLS {addr}"))?;
                Some((listener, tokio_rustls::TlsAcceptor::from(config.clone())))
            }
            None => None,
        };
        let tls_addr = tls.as_ref().map(|(l, _)| l.local_addr()).transpose()?;

        let (low, high) = setup.relay_ports;
        let first = low + (Now::system().unix_secs() % u64::from(high - low + 1)) as u16;
        let turn = Arc::new(Self {
            inner: Mutex::new(Inner {
                core: TurnServer::new(setup.core, &[setup.public_ip]),
                relays: HashMap::new(),
                streams: HashMap::new(),
                next_port: first,
            }),
            udp: Arc::new(udp),
            bind_ip: setup.bind_ip,
            public_ip: setup.public_ip,
            relay_ports: setup.relay_ports,
            tasks: TaskTracker::new(),
            shutdown,
            timer: Notify::new(),
            tcp: setup.tcp,
            tcp_per_ip: PerIp::new(setup.tcp.per_ip),
            fds: setup.fds,
        });
        turn.tasks.spawn(turn.clone().serve_udp());
        turn.tasks.spawn(turn.clone().accept(tcp, None));
        if let Some((listener, acceptor)) = tls {
            turn.tasks.spawn(turn.clone().accept(listener, Some(acceptor)));
        }
        turn.tasks.spawn(turn.clone().run_timers());
        turn.tasks.close();
        Ok((
            turn,
            TurnAddrs {
                udp: udp_addr,
                tcp: tcp_addr,
                tls: tls_addr,
            },
        ))
    }

    /// Waits until every TURN task has stopped (after `shutdown`).
    pub async fn stopped(&self) {
        self.tasks.wait().await;
    }

    /// A signalling member joined or left: the core relays for members only while they stay.
    pub fn handle_member(self: &Arc<Self>, event: MemberEvent) {
        self.process(|core| match event {
            MemberEvent::Joined(member) => core.handle_member_joined(member),
            MemberEvent::Left(member) => core.handle_member_left(member),
        });
    }

    pub fn counts(&self) -> TurnCounts {
        self.lock().core.counts()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `input` against the core, then carries out what it asks.
    fn process(self: &Arc<Self>, input: impl FnOnce(&mut TurnServer)) {
        let mut sends: Vec<(Arc<UdpSocket>, SocketAddr, Vec<u8>)> = Vec::new();
        {
            let mut inner = self.lock();
            let before = inner.core.poll_timeout();
            input(&mut inner.core);
            while let Some(out) = inner.core.poll_output() {
                match out {
                    Output::ToClient { client, data } => match client.transport {
                        Transport::Udp => sends.push((self.udp.clone(), client.addr, data)),
                        Transport::Tcp | Transport::Tls => {
                            let limit = self.tcp.outbox_bytes;
                            let stalled = inner
                                .streams
                                .get(&client.addr)
                                .is_some_and(|o| !o.push(data, limit));
                            if stalled {
                                // Dropping the outbox makes its writer close the connection.
                                inner.streams.remove(&client.addr);
                            }
                        }
                    },
                    Output::ToPeer { relay, peer, data } => {
                        if let Some(r) = inner.relays.get(&relay) {
                            sends.push((r.socket.clone(), peer, data));
                        }
                    }
                    Output::BindRelay { client, ipv6, even } => {
                        let bound = self.bind_relay(&mut inner, ipv6, even);
                        inner.core.handle_relay_bound(Now::system(), client, bound);
                    }
                    Output::CloseRelay { relay } => {
                        if let Some(r) = inner.relays.remove(&relay) {
                            r.task.abort();
                        }
                    }
                }
            }
            // Checked after the outputs: a bound relay starts an allocation's lifetime.
            let after = inner.core.poll_timeout();
            if after.is_some() && (before.is_none() || after < before) {
                self.timer.notify_one();
            }
        }
        for (socket, to, data) in sends {
            let _ = socket.try_send_to(&data, to);
        }
    }

    /// Binds a relay socket on the next free port of the range and starts reading it.
    fn bind_relay(self: &Arc<Self>, inner: &mut Inner, ipv6: bool, even: bool) -> Result<SocketAddr, ()> {
        if ipv6 != self.bind_ip.is_ipv6() {
            return Err(());
        }
        let Some(fd) = self.fds.try_take() else {
            tracing::warn!("TURN holds its share of file descriptors; refusing a relay");
            return Err(());
        };
        let (low, high) = self.relay_ports;
        for _ in 0..=(high - low) {
            let port = inner.next_port;
            inner.next_port = if port >= high { low } else { port + 1 };
            if even && port % 2 == 1 {
                continue;
            }
            let Ok(socket) = udp_socket(SocketAddr::new(self.bind_ip, port)) else {
                continue; // in use
            };
            let advertised = SocketAddr::new(self.public_ip, port);
            let socket = Arc::new(socket);
            let task = tokio::spawn(self.clone().serve_relay(socket.clone(), advertised)).abort_handle();
            inner.relays.insert(
                advertised,
                Relay {
                    socket,
                    task,
                    _fd: fd,
                },
            );
            return Ok(advertised);
        }
        tracing::warn!("TURN relay port range {low}-{high} is exhausted");
        Err(())
    }

    async fn serve_udp(self: Arc<Self>) {
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                got = self.udp.recv_from(&mut buf) => match got {
                    Ok((n, from)) => {
                        let client = ClientAddr { transport: Transport::Udp, addr: from };
                        self.process(|core| core.handle_client(Now::system(), client, &buf[..n]));
                    }
                    // ICMP errors surface here on some systems; the socket is still fine.
                    Err(err) => tracing::debug!("TURN UDP receive: {err}"),
                },
            }
        }
    }

    async fn serve_relay(self: Arc<Self>, socket: Arc<UdpSocket>, relay: SocketAddr) {
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                got = socket.recv_from(&mut buf) => match got {
                    Ok((n, peer)) => {
                        self.process(|core| core.handle_peer(Now::system(), relay, peer, &buf[..n]));
                    }
                    Err(err) => tracing::debug!("TURN relay {relay} receive: {err}"),
                },
            }
        }
    }

    async fn accept(self: Arc<Self>, listener: TcpListener, tls: Option<tokio_rustls::TlsAcceptor>) {
        loop {
            let (stream, from) = tokio::select! {
                () = self.shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(err) => {
                        tracing::debug!("TURN accept: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // The address holds its share of connections, or TURN its share of descriptors:
            // closing at once costs least.
            let Some(slot) = self.admit(from.ip()) else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let turn = self.clone();
            match tls.clone() {
                None => {
                    let client = ClientAddr {
                        transport: Transport::Tcp,
                        addr: from,
                    };
                    self.tasks.spawn(async move {
                        turn.serve_stream(stream, client).await;
                        drop(slot);
                    });
                }
                Some(acceptor) => {
                    self.tasks.spawn(async move {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => {
                                let client = ClientAddr {
                                    transport: Transport::Tls,
                                    addr: from,
                                };
                                turn.serve_stream(tls, client).await;
                            }
                            Ok(Err(err)) => tracing::debug!("TURN TLS handshake with {from}: {err}"),
                            Err(_) => tracing::debug!("TURN TLS handshake with {from} timed out"),
                        }
                        drop(slot);
                    });
                }
            }
        }
    }

    /// A place for one more TCP/TLS client from `ip`: one of the address's
    /// `--turn-tcp-per-ip` and one of TURN's descriptors. `None` when either is used up.
    pub fn admit(&self, ip: IpAddr) -> Option<StreamSlot> {
        let ip_slot = self.tcp_per_ip.acquire(ip)?;
        let fd = self.fds.try_take()?;
        Some(StreamSlot {
            _ip: ip_slot,
            _fd: fd,
        })
    }

    /// Serves a TLS client that came in on the HTTPS port and spoke STUN, exactly as one of
    /// the TURN TLS listener's (idle timeout, outbox bounds), until it closes or the server
    /// shuts down. `slot` (from [`Turn::admit`]) is what counts it from now on.
    pub async fn serve_handed_over<S>(self: Arc<Self>, stream: S, from: SocketAddr, slot: StreamSlot)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let client = ClientAddr {
            transport: Transport::Tls,
            addr: from,
        };
        self.serve_stream(stream, client).await;
        drop(slot);
    }

    /// One TCP or TLS client: frames in, its outbox out.
    async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(self: Arc<Self>, stream: S, client: ClientAddr) {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(STREAM_QUEUE);
        let bytes = Arc::new(AtomicUsize::new(0));
        let outbox = Outbox {
            frames: tx,
            bytes: bytes.clone(),
        };
        self.lock().streams.insert(client.addr, outbox);
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        let idle = tokio::time::sleep(self.tcp.idle);
        tokio::pin!(idle);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                () = &mut idle => {
                    tracing::debug!("TURN {client:?} sent nothing for {:?}; closing", self.tcp.idle);
                    break;
                }
                out = rx.recv() => match out {
                    Some(frame) => {
                        // A reader that stops reading must not hold this task (and its frames).
                        match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&frame)).await {
                            Ok(Ok(())) => bytes.fetch_sub(frame.len(), Ordering::Relaxed),
                            Ok(Err(_)) | Err(_) => break,
                        };
                    }
                    None => break, // outbox dropped: not reading
                },
                read = reader.read(&mut chunk) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        idle.as_mut().reset(tokio::time::Instant::now() + self.tcp.idle);
                        buf.extend_from_slice(&chunk[..n]);
                        if !self.consume_frames(client, &mut buf) {
                            break;
                        }
                    }
                },
            }
        }
        self.lock().streams.remove(&client.addr);
        self.process(|core| core.handle_client_closed(client));
    }

    /// Feeds every complete frame in `buf` to the core; false if the stream is garbage.
    fn consume_frames(self: &Arc<Self>, client: ClientAddr, buf: &mut Vec<u8>) -> bool {
        let mut at = 0;
        while let Some(len) = stun::frame_len(&buf[at..]) {
            if len > MAX_FRAME {
                return false;
            }
            if buf.len() - at < len {
                break;
            }
            let frame = &buf[at..at + len];
            self.process(|core| core.handle_client(Now::system(), client, frame));
            at += len;
        }
        buf.drain(..at);
        true
    }

    /// Fires the core's timers (allocation expiry, sweeps of idle rate limits) when
    /// `poll_timeout` says, until `shutdown`; sleeps without a deadline when there is none.
    async fn run_timers(self: Arc<Self>) {
        loop {
            let next = self.lock().core.poll_timeout();
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                // `notify_one` keeps a permit, so a deadline moved between reading `next` and
                // getting here still wakes us.
                () = self.timer.notified() => {}
                () = sleep => self.process(|core| core.handle_timeout(Now::system())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outbox_is_bounded_in_bytes_and_the_writer_gives_them_back() {
        let (frames, mut written) = mpsc::channel(STREAM_QUEUE);
        let bytes = Arc::new(AtomicUsize::new(0));
        let outbox = Outbox {
            frames,
            bytes: bytes.clone(),
        };
        assert!(outbox.push(vec![0; 600], 1000));
        assert!(
            !outbox.push(vec![0; 600], 1000),
            "1,200 bytes queued is over 1,000"
        );
        // The writer writes the first frame and gives its bytes back.
        let frame = written.try_recv().unwrap();
        bytes.fetch_sub(frame.len(), Ordering::Relaxed);
        assert!(outbox.push(vec![0; 900], 1000));
    }
}
