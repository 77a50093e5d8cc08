//! `visavis-bench signal`: clients in rooms of two relay messages through a signalling server.
//!
//! A run has three phases:
//! 1. **idle**: `idle` extra connections join rooms of two and stay open (reading, and sending
//!    the protocol's keepalives); the server's RSS before and after gives KiB per idle
//!    connection.
//! 2. **pairs**: `2 × pairs` connections join rooms of two and pair up (for visavis: an accepted
//!    call). Connections joined per second are counted over phases 1 and 2.
//! 3. **load** for `warmup + duration`: in `closed` mode each pair ping-pongs as fast as it can
//!    (A sends, B receives and replies, ...); in `rate` mode each pair sends `rate / pairs`
//!    messages per second, alternating directions, whatever the replies do. Every message carries
//!    its send time; the receiver records send → receive latency. Messages sent during the warm-up
//!    are not counted. The server's CPU time over the counted window, divided by the messages
//!    relayed in it, is the server CPU per relayed message.
//!
//! Every phase is bounded in time; every address is on loopback.

use std::fmt::Display;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt};
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::net;
use crate::proto::{self, now_ns, Client, Incoming, Kind, Target};
use crate::stats::{Latency, ProcSample};

/// How the pairs send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Each pair ping-pongs as fast as it can: one message in flight per pair.
    Closed,
    /// A fixed total rate of messages per second, spread evenly over the pairs.
    Rate,
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    /// The server's base URL, e.g. `ws://127.0.0.1:8080` (PeerServer: including its mount path).
    pub url: String,
    pub pairs: usize,
    pub mode: Mode,
    /// Total messages per second in `rate` mode.
    pub rate: f64,
    /// The counted load window.
    pub duration: Duration,
    /// Load before the counted window (lets a JIT warm up).
    pub warmup: Duration,
    /// Sizes (whole frame, bytes) of the messages in turn: the first is an offer, the second an
    /// answer, the rest candidates. Ignored when `size` is set.
    pub message_sizes: Vec<usize>,
    /// Every message an offer of this many bytes (uniform ping-pong).
    pub size: Option<usize>,
    /// Extra connections that join and stay idle.
    pub idle: usize,
    /// Loopback source addresses to spread the connections over (empty: the kernel's choice).
    pub source_ips: Vec<IpAddr>,
    /// The server process, for CPU and RSS from /proc.
    pub server_pid: Option<u32>,
    /// Connections opened at once.
    pub concurrency: usize,
    /// Keep every connection open this long after the load, before closing.
    pub hold: Duration,
    /// With `hold`: stop holding as soon as this file exists.
    pub release_file: Option<PathBuf>,
    /// Created once every connection has joined (for scripts that sample the server then).
    pub ready_file: Option<PathBuf>,
    /// Prefix of room names and peer ids, unique per run.
    pub tag: String,
}

/// Limits that keep a run bounded.
const MAX_CONNECTIONS: usize = 60_000;
const MAX_SECS: f64 = 3600.0;
const MAX_MESSAGE: usize = 64 * 1024;
/// A message not relayed within this time counts as an error (and ends its pair's load).
const RELAY_TIMEOUT: Duration = Duration::from_secs(5);
/// Time given to the server to settle before the RSS of idle connections is read.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// Errors whose text the report keeps.
const KEPT_ERRORS: usize = 5;

impl Config {
    /// A few seconds with a handful of pairs, for the test suite: 5 pairs ping-pong ~2 KiB
    /// messages for 2 s after 0.2 s of warm-up, beside 4 idle connections.
    pub fn quick(target: Target, url: impl Into<String>) -> Self {
        Self {
            pairs: 5,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(200),
            idle: 4,
            size: Some(2048),
            ..Self::new(target, url)
        }
    }

    /// The defaults: 10 pairs, closed loop, 10 s after 1 s of warm-up, offer/answer/candidate
    /// sizes 3072/1024/200.
    pub fn new(target: Target, url: impl Into<String>) -> Self {
        Self {
            target,
            url: url.into(),
            pairs: 10,
            mode: Mode::Closed,
            rate: 5000.0,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            message_sizes: vec![3072, 1024, 200],
            size: None,
            idle: 0,
            source_ips: Vec::new(),
            server_pid: None,
            concurrency: 64,
            hold: Duration::ZERO,
            release_file: None,
            ready_file: None,
            tag: format!("b{}-{}", std::process::id(), now_ns() % 1_000_000),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        net::loopback_addr(&self.url)?;
        for ip in &self.source_ips {
            net::check_loopback(*ip)?;
        }
        if self.idle + 2 * self.pairs > MAX_CONNECTIONS {
            bail!("at most {MAX_CONNECTIONS} connections per run");
        }
        for (what, d) in [
            ("duration", self.duration),
            ("warmup", self.warmup),
            ("hold", self.hold),
        ] {
            if d.as_secs_f64() > MAX_SECS {
                bail!("--{what} is over {MAX_SECS} s");
            }
        }
        if self.mode == Mode::Rate && !(self.rate > 0.0 && self.rate <= 1e6) {
            bail!("--rate must be in (0, 1000000]");
        }
        let sizes = self
            .size
            .as_ref()
            .map_or(&self.message_sizes[..], std::slice::from_ref);
        if sizes.is_empty() || sizes.iter().any(|&s| s == 0 || s > MAX_MESSAGE) {
            bail!("message sizes must be 1..={MAX_MESSAGE} bytes");
        }
        if !(1..=4096).contains(&self.concurrency) {
            bail!("--concurrency must be 1..=4096");
        }
        Ok(())
    }

    /// The kind and size of message number `seq` of a pair.
    fn message(&self, seq: u64) -> (Kind, usize) {
        if let Some(size) = self.size {
            return (Kind::Offer, size);
        }
        let i = (seq % self.message_sizes.len() as u64) as usize;
        let kind = match i {
            0 => Kind::Offer,
            1 => Kind::Answer,
            _ => Kind::Candidate,
        };
        (kind, self.message_sizes[i])
    }

    fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.source_ips.is_empty()).then(|| self.source_ips[i % self.source_ips.len()])
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: Target,
    pub mode: Mode,
    pub pairs: usize,
    pub idle: usize,
    /// Connections joined and held at once (idle plus paired).
    pub connections: usize,
    /// Connections opened and joined per second (idle and pair phases).
    pub joins_per_sec: f64,
    /// The counted load window, seconds.
    pub duration_s: f64,
    /// Messages sent in the counted window.
    pub sent: u64,
    /// Messages sent in the counted window and received by the other member.
    pub relayed: u64,
    pub relayed_per_sec: f64,
    /// Send → receive latency of the counted messages.
    pub latency: Option<Latency>,
    /// Failed connections or joins, refused or lost messages, unexpected closes.
    pub errors: u64,
    /// The first few errors, as text.
    pub error_samples: Vec<String>,
    /// CPU seconds this load generator used in the counted window.
    pub client_cpu_s: f64,
    /// Present when the server's pid was given.
    pub server: Option<ServerReport>,
}

/// The server's counters, from /proc.
#[derive(Debug, Clone, Serialize)]
pub struct ServerReport {
    /// RSS before anything connected, KiB.
    pub rss_start_kib: u64,
    /// RSS with the idle connections joined, KiB.
    pub rss_idle_kib: u64,
    /// RSS at the end of the load, KiB.
    pub rss_end_kib: u64,
    /// CPU seconds (user + system) in the counted window.
    pub cpu_s: f64,
    pub cpu_us_per_msg: Option<f64>,
    pub kib_per_idle_conn: Option<f64>,
}

#[derive(Debug, Default)]
struct Errors {
    count: AtomicU64,
    samples: Mutex<Vec<String>>,
}

impl Errors {
    fn add(&self, what: impl Display) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() < KEPT_ERRORS {
            samples.push(format!("{what:#}"));
        }
    }
}

/// What one pair's load loop counted.
#[derive(Debug, Default)]
struct PairResult {
    sent: u64,
    relayed: u64,
    latencies_ns: Vec<u64>,
}

/// Runs the benchmark described by `config`.
pub async fn run(config: Config) -> anyhow::Result<Report> {
    config.validate()?;
    let config = Arc::new(config);
    let errors = Arc::new(Errors::default());
    let server = || config.server_pid.map(ProcSample::read).transpose();
    let server_start = server()?;

    // Phase 1: idle connections, in rooms of two.
    let started = Instant::now();
    let idle = open_all(&config, &errors, 0..config.idle, |i| {
        format!("{}-i{}", config.tag, i / 2)
    })
    .await;
    let idle_elapsed = started.elapsed();
    let stop = CancellationToken::new();
    let idle_joined = idle.len();
    let idle_tasks: Vec<JoinHandle<()>> = idle
        .into_iter()
        .map(|(_, client)| tokio::spawn(hold_idle(client, stop.clone(), errors.clone())))
        .collect();
    if idle_joined > 0 && config.server_pid.is_some() {
        tokio::time::sleep(IDLE_SETTLE).await;
    }
    let server_idle = server()?;

    // Phase 2: pairs.
    let started = Instant::now();
    let first = config.idle;
    let members = open_all(&config, &errors, first..first + 2 * config.pairs, |i| {
        format!("{}-p{}", config.tag, (i - first) / 2)
    })
    .await;
    let pairs_elapsed = started.elapsed();
    let joined = idle_joined + members.len();
    let join_secs = (idle_elapsed + pairs_elapsed).as_secs_f64();
    let pairs = pair_up(&config, &errors, first, members).await;
    if let Some(path) = &config.ready_file {
        std::fs::write(path, format!("{}\n", idle_joined + 2 * pairs.len()))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    // Phase 3: load.
    let start = Instant::now();
    let counted_from = start + config.warmup;
    let end = counted_from + config.duration;
    let counted_from_ns = now_ns() + u64::try_from(config.warmup.as_nanos()).unwrap_or(u64::MAX);
    let n_pairs = pairs.len();
    let tasks: Vec<_> = pairs
        .into_iter()
        .enumerate()
        .map(|(i, (a, b))| {
            let (config, errors) = (config.clone(), errors.clone());
            tokio::spawn(async move {
                match config.mode {
                    Mode::Closed => closed_loop(a, b, &config, counted_from_ns, end, &errors).await,
                    Mode::Rate => {
                        let period = Duration::from_secs_f64(n_pairs as f64 / config.rate);
                        // Spread the pairs' sends evenly over one period.
                        let first = start + period.mul_f64(i as f64 / n_pairs as f64);
                        rate_loop(a, b, &config, counted_from_ns, (first, period), end, &errors).await
                    }
                }
            })
        })
        .collect();
    sleep_until(counted_from.into()).await;
    let server_before = server()?;
    let client_before = ProcSample::read(std::process::id()).ok();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.context("a pair's task panicked")?);
    }
    let server_after = server()?;
    let client_after = ProcSample::read(std::process::id()).ok();

    let release_at = Instant::now() + config.hold;
    while Instant::now() < release_at && !config.release_file.as_ref().is_some_and(|f| f.exists()) {
        tokio::time::sleep(
            Duration::from_millis(100).min(release_at.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    stop.cancel();
    let closing = results.into_iter().map(|(a, b, result)| async move {
        tokio::join!(a.close(), b.close());
        result
    });
    let results: Vec<PairResult> = futures_util::future::join_all(closing).await;
    for task in idle_tasks {
        let _ = task.await;
    }

    let mut latencies: Vec<u64> = results
        .iter()
        .flat_map(|r| r.latencies_ns.iter().copied())
        .collect();
    let sent = results.iter().map(|r| r.sent).sum();
    let relayed = results.iter().map(|r| r.relayed).sum();
    let duration_s = config.duration.as_secs_f64();
    let server = match (server_start, server_idle, server_before, server_after) {
        (Some(start), Some(idle), Some(before), Some(after)) => {
            let cpu_s = after.cpu_secs_since(&before);
            Some(ServerReport {
                rss_start_kib: start.rss_kib,
                rss_idle_kib: idle.rss_kib,
                rss_end_kib: after.rss_kib,
                cpu_s,
                cpu_us_per_msg: (relayed > 0).then(|| cpu_s * 1e6 / relayed as f64),
                kib_per_idle_conn: (idle_joined > 0)
                    .then(|| (idle.rss_kib as f64 - start.rss_kib as f64) / idle_joined as f64),
            })
        }
        _ => None,
    };
    let errors_seen = errors.samples.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Report {
        target: config.target,
        mode: config.mode,
        pairs: config.pairs,
        idle: config.idle,
        connections: idle_joined + 2 * n_pairs,
        joins_per_sec: if join_secs > 0.0 {
            joined as f64 / join_secs
        } else {
            0.0
        },
        duration_s,
        sent,
        relayed,
        relayed_per_sec: relayed as f64 / duration_s.max(1e-9),
        latency: Latency::of(&mut latencies),
        errors: errors.count.load(Ordering::Relaxed),
        error_samples: errors_seen,
        client_cpu_s: match (client_before, client_after) {
            (Some(before), Some(after)) => after.cpu_secs_since(&before),
            _ => 0.0,
        },
        server,
    })
}

/// Opens and joins connections `indices` (at most `concurrency` at once); connection `i` joins
/// room `room(i)`. Failures are counted; the joined clients come back sorted by index.
async fn open_all(
    config: &Config,
    errors: &Errors,
    indices: std::ops::Range<usize>,
    room: impl Fn(usize) -> String,
) -> Vec<(usize, Client)> {
    let room = &room;
    let mut joined: Vec<(usize, Client)> = stream::iter(indices)
        .map(|i| async move {
            let ident = format!("{}-{i}", config.tag);
            let result = async {
                let mut client =
                    Client::connect(config.target, &config.url, config.source(i), &ident).await?;
                client.join(&room(i), &format!("bench {i}")).await?;
                anyhow::Ok(client)
            }
            .await;
            (i, result)
        })
        .buffer_unordered(config.concurrency)
        .filter_map(|(i, result)| async move {
            match result {
                Ok(client) => Some((i, client)),
                Err(err) => {
                    errors.add(format_args!("connection {i}: {err:#}"));
                    None
                }
            }
        })
        .collect()
        .await;
    joined.sort_by_key(|(i, _)| *i);
    joined
}

/// Pairs members `first + 2k` and `first + 2k + 1` (who share a room); a pair missing a member
/// is dropped.
async fn pair_up(
    config: &Config,
    errors: &Errors,
    first: usize,
    members: Vec<(usize, Client)>,
) -> Vec<(Client, Client)> {
    let mut candidates = Vec::new();
    let mut members = members.into_iter().peekable();
    while let Some((i, a)) = members.next() {
        if (i - first) % 2 == 0 {
            if let Some((_, b)) = members.next_if(|(j, _)| *j == i + 1) {
                candidates.push((a, b));
                continue;
            }
        }
        a.close().await;
    }
    stream::iter(candidates)
        .map(|(mut a, mut b)| async move {
            match proto::pair(&mut a, &mut b).await {
                Ok(()) => Some((a, b)),
                Err(err) => {
                    errors.add(format_args!("pairing: {err:#}"));
                    None
                }
            }
        })
        .buffer_unordered(config.concurrency)
        .filter_map(|pair| async move { pair })
        .collect()
        .await
}

/// Keeps an idle connection open until `stop`: reads what the server sends, sends keepalives.
async fn hold_idle(mut client: Client, stop: CancellationToken, errors: Arc<Errors>) {
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = sleep_until(client.keepalive_at().into()) => {
                if let Err(err) = client.keepalive_if_due().await {
                    errors.add(format_args!("idle connection: {err:#}"));
                    return;
                }
            }
            incoming = client.recv() => match incoming {
                Ok(Incoming::Failure(why)) => errors.add(format_args!("idle connection: {why}")),
                Ok(_) => {}
                Err(err) => {
                    errors.add(format_args!("idle connection: {err:#}"));
                    return;
                }
            },
        }
    }
    client.close().await;
}

/// Ping-pong: A sends, B receives and replies, A receives, ... until `end`.
async fn closed_loop(
    mut a: Client,
    mut b: Client,
    config: &Config,
    counted_from_ns: u64,
    end: Instant,
    errors: &Errors,
) -> (Client, Client, PairResult) {
    let mut result = PairResult::default();
    let mut seq = 0u64;
    while Instant::now() < end {
        let (kind, size) = config.message(seq);
        if now_ns() >= counted_from_ns {
            result.sent += 1;
        }
        let (from, to) = if seq % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        let step = async {
            from.send_relay(kind, size).await?;
            to.recv_relay().await
        };
        match timeout(RELAY_TIMEOUT, step).await {
            Ok(Ok(sent_ns)) => {
                if sent_ns >= counted_from_ns {
                    result.relayed += 1;
                    result.latencies_ns.push(now_ns().saturating_sub(sent_ns));
                }
            }
            Ok(Err(err)) => {
                errors.add(format_args!("pair: {err:#}"));
                break;
            }
            Err(_) => {
                errors.add(format_args!("pair: no message relayed within {RELAY_TIMEOUT:?}"));
                break;
            }
        }
        seq += 1;
        let keepalive = async {
            a.keepalive_if_due().await?;
            b.keepalive_if_due().await
        };
        if let Err(err) = keepalive.await {
            errors.add(format_args!("pair keepalive: {err:#}"));
            break;
        }
    }
    (a, b, result)
}

/// Open loop: sends at `first`, `first + period`, ... until `end` (alternating A → B and
/// B → A) whatever the replies do, and records what arrives; waits up to [`RELAY_TIMEOUT`]
/// after `end` for messages still in flight, which then count as errors.
async fn rate_loop(
    mut a: Client,
    mut b: Client,
    config: &Config,
    counted_from_ns: u64,
    (first, period): (Instant, Duration),
    end: Instant,
    errors: &Errors,
) -> (Client, Client, PairResult) {
    let mut result = PairResult::default();
    let mut next = first;
    let mut seq = 0u64;
    let mut in_flight = 0u64;
    let give_up = end + RELAY_TIMEOUT;
    loop {
        let now = Instant::now();
        if now >= end && in_flight == 0 {
            break;
        }
        if now >= give_up {
            errors.add(format_args!(
                "pair: {in_flight} messages not relayed within {RELAY_TIMEOUT:?}"
            ));
            break;
        }
        let wake = if next < end { next } else { give_up };
        let wake = wake.min(a.keepalive_at()).min(b.keepalive_at());
        let incoming = tokio::select! {
            incoming = a.recv() => incoming,
            incoming = b.recv() => incoming,
            () = sleep_until(wake.into()) => {
                let tick = async {
                    if Instant::now() >= next && next < end {
                        let (kind, size) = config.message(seq);
                        let from = if seq % 2 == 0 { &mut a } else { &mut b };
                        if now_ns() >= counted_from_ns {
                            result.sent += 1;
                        }
                        from.send_relay(kind, size).await?;
                        seq += 1;
                        in_flight += 1;
                        next += period;
                    }
                    a.keepalive_if_due().await?;
                    b.keepalive_if_due().await?;
                    anyhow::Ok(Incoming::Other)
                };
                tick.await
            }
        };
        match incoming {
            Ok(Incoming::Relay { sent_ns }) => {
                in_flight = in_flight.saturating_sub(1);
                if sent_ns >= counted_from_ns {
                    result.relayed += 1;
                    result.latencies_ns.push(now_ns().saturating_sub(sent_ns));
                }
            }
            Ok(Incoming::Other) => {}
            Ok(Incoming::Failure(why)) => {
                errors.add(format_args!("pair: server: {why}"));
                break;
            }
            Err(err) => {
                errors.add(format_args!("pair: {err:#}"));
                break;
            }
        }
    }
    (a, b, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_cycle_through_the_sizes() {
        let config = Config::new(Target::Visavis, "ws://127.0.0.1:1");
        assert_eq!(config.message(0), (Kind::Offer, 3072));
        assert_eq!(config.message(1), (Kind::Answer, 1024));
        assert_eq!(config.message(2), (Kind::Candidate, 200));
        assert_eq!(config.message(3), (Kind::Offer, 3072));
        let quick = Config::quick(Target::Peerjs, "ws://127.0.0.1:1");
        assert_eq!(quick.message(7), (Kind::Offer, 2048));
    }

    #[test]
    fn configs_off_loopback_or_unbounded_are_refused() {
        let mut config = Config::new(Target::Visavis, "ws://192.0.2.1:80");
        assert!(config.validate().is_err());
        config.url = "ws://127.0.0.1:80".into();
        assert!(config.validate().is_ok());
        config.source_ips = vec!["10.1.1.1".parse().unwrap()];
        assert!(config.validate().is_err());
        config.source_ips = vec!["127.0.0.2".parse().unwrap()];
        config.duration = Duration::from_secs(100_000);
        assert!(config.validate().is_err());
    }
}
