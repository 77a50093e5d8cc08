//! Several visavis nodes serving the same rooms through Redis (`--redis`): a room lives on
//! one node, the holder of its lease ([`lease`]); a connection that reaches another node (the
//! load balancer's choice) is sent there from its first message ([`route`], [`forward`]);
//! each room's state is written to Redis while it changes ([`redis_store`]), so that when its
//! node dies another one takes it over and its clients resume there with nothing lost; a node
//! that stops (SIGTERM) writes its rooms down complete and hands them over at once. Nodes find
//! each other through a registry with heartbeats ([`nodes`]). docs/scaling.md tells the
//! design; the pure parts are unit-tested here, the whole in tests/it/cluster.rs.

pub mod api;
pub mod forward;
pub mod lease;
pub mod nodes;
pub mod redis_store;
pub mod route;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use visavis_sansio::Now;
use visavis_signal::{close, Snapshot};

use crate::hub::Hub;
use crate::persist::FLUSH_EVERY;
use crate::turn::Turn;
use crate::websocket::WebSocket;
use lease::{Leases, Renewed};
use nodes::{NodeEntry, Registry};
use redis_store::RedisStore;
use route::{Decision, Target};

/// Where a room is served, as [`Cluster::place`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Placed {
    Here,
    At { node: String, url: String },
    Nowhere,
}

/// The cluster's settings (`--redis`, `--node-url`, `--lease-ttl-ms`, `--lease-renew-ms`,
/// `--node-heartbeat-ms`).
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub redis_url: String,
    /// Where the other nodes reach this one (`http://host:port`).
    pub node_url: String,
    /// How long a room's lease lasts without renewal: how long a dead node's rooms wait
    /// before another node takes them.
    pub lease_ttl: Duration,
    /// How often leases are renewed.
    pub lease_renew: Duration,
    /// How often a node writes its registry entry; three missed count as dead.
    pub node_heartbeat: Duration,
    /// A connection that has not sent its first message by then is closed.
    pub join_timeout: Duration,
    pub max_message: usize,
}

/// This node's part in the cluster.
pub struct Cluster {
    config: ClusterConfig,
    store: RedisStore,
    /// This node's id: random, new with every process.
    node: String,
    secret: String,
    leases: Mutex<Leases>,
    registry: Mutex<Registry>,
    hub: Arc<Hub>,
    turn: Option<Arc<Turn>>,
    /// Taking a room over is one at a time, so that two connections of one room arriving
    /// together adopt its state once.
    adopting: tokio::sync::Mutex<()>,
    /// Redis lost its data (restarted without persistence): every room is written again.
    lost_data: std::sync::atomic::AtomicBool,
    /// Reaches the other nodes' REST API.
    http: api::NodeClient,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.node)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Cluster {
    /// Joins the cluster: connects to Redis (which must be reachable now), learns the cluster's
    /// secret and registers this node.
    pub async fn start(
        config: ClusterConfig,
        hub: Arc<Hub>,
        turn: Option<Arc<Turn>>,
    ) -> anyhow::Result<Arc<Self>> {
        let store = RedisStore::connect(&config.redis_url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach Redis at {} (--redis): {e:#}", config.redis_url))?;
        let (secret, _) = store.secret(&crate::random_hex(32)).await?;
        let node = crate::random_hex(8);
        let heartbeat_ms = u64::try_from(config.node_heartbeat.as_millis()).unwrap_or(u64::MAX);
        let cluster = Arc::new(Self {
            leases: Mutex::new(Leases::new(config.lease_ttl, config.lease_renew, Instant::now())),
            registry: Mutex::new(Registry::new(3 * heartbeat_ms)),
            store,
            node,
            secret,
            hub,
            turn,
            adopting: tokio::sync::Mutex::new(()),
            lost_data: std::sync::atomic::AtomicBool::new(false),
            http: api::node_client(),
            config,
        });
        cluster.heartbeat().await?;
        tracing::info!(
            "cluster node {} at {} through {}; {} nodes alive; leases {:?}, renewed every {:?}",
            cluster.node,
            cluster.config.node_url,
            cluster.store.describe(),
            lock(&cluster.registry).alive_nodes(Now::system().unix_ms).len(),
            cluster.config.lease_ttl,
            cluster.config.lease_renew,
        );
        Ok(cluster)
    }

    /// Whether a request with `headers` comes from another node: its
    /// [`forward::SECRET_HEADER`] is this cluster's secret.
    pub fn sent_by_node(&self, headers: &axum::http::HeaderMap) -> bool {
        headers
            .get(forward::SECRET_HEADER)
            .and_then(|v| v.to_str().ok())
            // Compared in constant time: it admits any address a forwarder names.
            .is_some_and(|secret| crate::api::same_secret(secret, &self.secret))
    }

    /// Serves a new WebSocket: reads its first message, then serves it here or forwards it to
    /// the node holding its room (taking the room over if nobody holds it). `forwarded`: another
    /// node sent it (it is never forwarded again).
    pub async fn serve_connection(
        self: Arc<Self>,
        mut ws: WebSocket,
        ip: IpAddr,
        forwarded: bool,
        shutdown: CancellationToken,
    ) {
        let first = match tokio::time::timeout(self.config.join_timeout, first_text(&mut ws)).await {
            Ok(Some(first)) => first,
            Ok(None) => return,
            Err(_) => {
                let _ = crate::connection::close_with(&mut ws, close::POLICY, "did not join in time").await;
                return;
            }
        };
        let room = match route::target(&first) {
            Target::Anywhere => {
                return crate::connection::serve(ws, self.hub.clone(), ip, Some(first)).await;
            }
            Target::Room(room) => room,
        };
        let deadline = Instant::now() + self.patience();
        loop {
            match self.place(&room, forwarded, deadline, &shutdown).await {
                Placed::Here => {
                    return crate::connection::serve(ws, self.hub.clone(), ip, Some(first)).await;
                }
                Placed::At { node, url } => {
                    match forward::connect(&url, &self.secret, ip, self.config.max_message).await {
                        Ok(upstream) => {
                            tracing::debug!(room, node, "forwarding a connection");
                            return forward::pipe(ws, upstream, first, shutdown).await;
                        }
                        Err(err) => {
                            tracing::debug!(room, node, "cannot reach the room's node: {err:#}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                Placed::Nowhere => break,
            }
        }
        let _ = crate::connection::close_with(&mut ws, close::RESTART, "room moving; try again").await;
    }

    /// How long a connection or request waits for its room to find a node: a dead holder's
    /// lease runs out within its TTL; give it twice that and more (a busy node, a renewal in
    /// flight): waiting costs little, a refusal a retry.
    fn patience(&self) -> Duration {
        2 * self.config.lease_ttl + Duration::from_secs(3)
    }

    /// Where `room` is served: here (held, or taken now with its stored state), or at another
    /// node; `Nowhere` past `deadline`, at shutdown, or when a `forwarded` request finds the
    /// room moved on (it is never forwarded twice).
    pub(crate) async fn place(
        &self,
        room: &str,
        forwarded: bool,
        deadline: Instant,
        shutdown: &CancellationToken,
    ) -> Placed {
        // A private room is only ever made by `create`, on the node it reached, which takes its
        // lease at its next write (within FLUSH_EVERY): until then a guest's first knock may
        // find no holder and no state. Give the creating node that long (and a busy machine's
        // margin) before answering here that no such room exists.
        let wait_for_creator = Instant::now() + CREATOR_LEASE_WAIT;
        while Instant::now() < deadline && !shutdown.is_cancelled() {
            let holder = match self.store.holder(room).await {
                Ok(holder) => holder,
                // Redis is unreachable: rooms held here are still served here.
                Err(err) if lock(&self.leases).holds(room) => {
                    tracing::debug!(room, "Redis: {err:#}; serving a room held here");
                    Some(self.node.clone())
                }
                Err(err) => {
                    tracing::warn!(room, "cannot find the room's node: Redis: {err:#}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let taken = lock(&self.leases).holds(room);
            match route::decide(holder.as_deref(), &self.node, taken, forwarded) {
                Decision::Local => return Placed::Here,
                Decision::Acquire => {
                    let patient = Instant::now() < wait_for_creator;
                    if !self.acquire(room, patient).await {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Decision::Wait => tokio::time::sleep(Duration::from_millis(10)).await,
                Decision::Forward(node) => {
                    let url = lock(&self.registry)
                        .url_of(&node, Now::system().unix_ms)
                        .map(str::to_owned);
                    match url {
                        Some(url) => return Placed::At { node, url },
                        // A holder that is not alive (or stopping) is waited out: its lease ends.
                        None => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                Decision::Refuse => break,
            }
        }
        Placed::Nowhere
    }

    /// The other live nodes' URLs.
    pub(crate) fn other_nodes(&self) -> Vec<String> {
        let registry = lock(&self.registry);
        let now_ms = Now::system().unix_ms;
        registry
            .alive_nodes(now_ms)
            .into_iter()
            .filter(|node| *node != self.node)
            .filter_map(|node| registry.url_of(node, now_ms).map(str::to_owned))
            .collect()
    }

    /// The cluster's secret, which a request from another node shows.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// Takes `room`'s lease if nobody holds it, and its stored state (a node held it before);
    /// whether this node holds it now. With `patient`, a private room with no stored state
    /// (one just made on another node, whose lease comes with its first write) is left alone.
    async fn acquire(&self, room: &str, patient: bool) -> bool {
        let _one_at_a_time = self.adopting.lock().await;
        if lock(&self.leases).holds(room) {
            return true;
        }
        let sent = Instant::now();
        match self.store.acquire(room, &self.node, self.config.lease_ttl).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(err) => {
                tracing::warn!(room, "cannot take the room's lease: {err:#}");
                return false;
            }
        }
        let stored = match self.store.load_room(room).await {
            Ok(stored) => stored,
            Err(err) => {
                // Taking the room without its state would lose its calls: give it back.
                tracing::warn!(room, "cannot read the room's state: {err:#}");
                let _ = self.store.release(&[room.to_owned()], &self.node).await;
                return false;
            }
        };
        if stored.is_none()
            && patient
            && visavis_room::is_private_id(room)
            && !self.hub.room_ids().iter().any(|r| r == room)
        {
            let _ = self.store.release(&[room.to_owned()], &self.node).await;
            return false;
        }
        if let Some(bytes) = stored {
            match serde_json::from_slice::<Snapshot>(&bytes) {
                Ok(snapshot) => {
                    let (sessions, age) = (
                        snapshot.sessions.len(),
                        Now::system().unix_ms.saturating_sub(snapshot.taken_at),
                    );
                    let complete = snapshot.complete;
                    let members = self.hub.adopt(snapshot);
                    if let Some(turn) = &self.turn {
                        for member in &members {
                            turn.handle_member(visavis_signal::MemberEvent::Joined(*member));
                        }
                    }
                    tracing::info!(
                        room,
                        sessions,
                        members = members.len(),
                        "took the room over ({}, {age} ms old)",
                        if complete { "handed over" } else { "its node died" }
                    );
                }
                Err(err) => tracing::warn!(
                    room,
                    "the room's stored state cannot be read ({err}); starting it anew"
                ),
            }
        }
        lock(&self.leases).handle_acquired(room, sent);
        true
    }

    /// Writes the registry entry, reads the others', and keeps the secret in Redis (put back if
    /// Redis lost its data).
    async fn heartbeat(&self) -> anyhow::Result<()> {
        let now_ms = Now::system().unix_ms;
        let entry = serde_json::to_string(&NodeEntry {
            url: self.config.node_url.clone(),
            seen_ms: now_ms,
        })?;
        let entries = self.store.heartbeat(&self.node, &entry).await?;
        let stale: Vec<String> = {
            let mut registry = lock(&self.registry);
            registry.handle_entries(entries);
            registry.stale(now_ms).into_iter().map(str::to_owned).collect()
        };
        if !stale.is_empty() {
            let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
            self.store.forget_nodes(&stale).await?;
        }
        let (_, written) = self.store.secret(&self.secret).await?;
        if written {
            tracing::warn!("Redis lost its data (restarted?): writing every room here again");
            self.lost_data.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// One round of lease renewals (if due): rooms living here are renewed (or taken), rooms
    /// gone are given back, rooms another node holds now are sent there.
    async fn renew(&self) {
        let local = self.hub.room_ids();
        let Some(round) = lock(&self.leases).poll_round(Instant::now(), local.iter().map(String::as_str))
        else {
            return;
        };
        let sent = Instant::now();
        match self
            .store
            .renew(&round.renew, &self.node, self.config.lease_ttl)
            .await
        {
            Ok(granted) => {
                for (room, granted) in round.renew.iter().zip(granted) {
                    let verdict = lock(&self.leases).handle_renewed(room, sent, granted);
                    if verdict == Renewed::Lost {
                        tracing::warn!(
                            room,
                            "another node holds this room now; sending its clients there"
                        );
                        self.hub.evict(room);
                    }
                }
            }
            Err(err) => {
                let lapsed = lock(&self.leases).lapsed(Instant::now()).len();
                tracing::warn!(
                    "cannot renew leases: {err:#} ({lapsed} rooms past their lease, still served here)"
                );
            }
        }
        if !round.release.is_empty() {
            match self.store.release(&round.release, &self.node).await {
                Ok(()) => {
                    let mut leases = lock(&self.leases);
                    for room in &round.release {
                        leases.handle_released(room);
                    }
                }
                Err(err) => tracing::warn!("cannot give leases back: {err:#}"),
            }
        }
    }

    /// Keeps the rooms' state in Redis while they change, the leases renewed and the registry
    /// entry fresh, until `shutdown`. Returns the writer for the final [`Cluster::drain`].
    /// Leases are renewed by a task of their own, so that a slow write (a large state, a busy
    /// machine) never delays a renewal past the lease's end.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) -> Writer {
        let leases = tokio::spawn({
            let (cluster, shutdown) = (self.clone(), shutdown.clone());
            async move { cluster.keep_leases(shutdown).await }
        });
        let mut writer = Writer::default();
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => writer.flush(&self, false).await,
            }
        }
        let _ = leases.await;
        // Stopping: out of the registry at once, so that the other nodes wait for this one's
        // rooms to be handed over instead of forwarding to it.
        if let Err(err) = self.store.forget_nodes(&[&self.node]).await {
            tracing::warn!("cannot leave the node registry: {err:#}");
        }
        writer
    }

    /// Renews the leases when due, and the registry entry every heartbeat, until `shutdown`.
    async fn keep_leases(&self, shutdown: CancellationToken) {
        let mut next_heartbeat = Instant::now() + self.config.node_heartbeat;
        loop {
            let due = lock(&self.leases).poll_timeout().min(next_heartbeat);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(due.into()) => {}
            }
            self.renew().await;
            if Instant::now() >= next_heartbeat {
                next_heartbeat = Instant::now() + self.config.node_heartbeat;
                if let Err(err) = self.heartbeat().await {
                    tracing::warn!("cluster heartbeat: {err:#}");
                }
            }
        }
    }

    /// The graceful stop's last step, once every session here is detached: writes every room
    /// down complete, then gives back every lease, so the other nodes take the rooms over at
    /// once (their clients were told to `reconnect`).
    pub async fn drain(&self, mut writer: Writer) {
        let started = Instant::now();
        writer.flush(self, true).await;
        let held: Vec<String> = lock(&self.leases).held().map(str::to_owned).collect();
        match self.store.release(&held, &self.node).await {
            Ok(()) => tracing::info!(
                "handed {} rooms over in {} ms",
                held.len(),
                started.elapsed().as_millis()
            ),
            Err(err) => {
                tracing::warn!("cannot give the leases back ({err:#}): the rooms move when they run out")
            }
        }
    }
}

/// How long a connection for a private room nobody holds waits for the node that made it
/// (`create`) to take its lease: a few of that node's writes (`FLUSH_EVERY`).
const CREATOR_LEASE_WAIT: Duration = Duration::from_millis(1000);

/// The first text frame of a new connection; `None` if it closed first.
async fn first_text(ws: &mut WebSocket) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return Some(text.as_str().to_owned()),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
            Ok(Message::Binary(_) | Message::Close(_)) | Err(_) => return None,
        }
    }
}

/// Writes each room's snapshot to Redis when it changed, and deletes the snapshots of rooms
/// that ended here.
#[derive(Debug, Default)]
pub struct Writer {
    /// What was last written, per room.
    last: HashMap<String, Vec<u8>>,
    /// A write failed: write everything next time.
    dirty: bool,
}

impl Writer {
    async fn flush(&mut self, cluster: &Cluster, force: bool) {
        let lost = cluster
            .lost_data
            .swap(false, std::sync::atomic::Ordering::Relaxed);
        let force = force || lost || std::mem::take(&mut self.dirty);
        let Some(snapshot) = cluster.hub.snapshot(force) else {
            return;
        };
        let mut current = HashMap::new();
        let mut changed = Vec::new();
        for (room, snap) in snapshot.split() {
            let bytes = match serde_json::to_vec(&snap) {
                Ok(bytes) => bytes,
                Err(err) => {
                    tracing::error!(room, "cannot encode the room's state: {err}");
                    continue;
                }
            };
            if force || self.last.get(&room) != Some(&bytes) {
                changed.push((room.clone(), bytes.clone()));
            }
            current.insert(room, bytes);
        }
        let gone: Vec<String> = self
            .last
            .keys()
            .filter(|room| !current.contains_key(*room))
            .cloned()
            .collect();
        // A room made here without a lease (`create`: its id is the core's) is taken at once,
        // not at the next renewal round, so no other node opens it meanwhile.
        let unheld: Vec<String> = {
            let leases = lock(&cluster.leases);
            changed
                .iter()
                .map(|(room, _)| room)
                .filter(|room| !leases.holds(room))
                .cloned()
                .collect()
        };
        if !unheld.is_empty() {
            let sent = Instant::now();
            if let Ok(granted) = cluster
                .store
                .renew(&unheld, &cluster.node, cluster.config.lease_ttl)
                .await
            {
                let mut leases = lock(&cluster.leases);
                for (room, granted) in unheld.iter().zip(granted) {
                    leases.handle_renewed(room, sent, granted);
                }
            }
        }
        match cluster.store.save_rooms(&changed, &gone, &cluster.node).await {
            Ok(()) => self.last = current,
            Err(err) => {
                tracing::warn!("cannot write the rooms' state to Redis: {err:#}");
                self.dirty = true;
            }
        }
    }
}
