//! The cluster's shared store on Redis: each room's snapshot, the rooms' leases, the node
//! registry and the cluster's secret. Every command is bounded in time ([`TIMEOUT`]); the
//! connection reconnects by itself (`ConnectionManager`), so a Redis restart costs the
//! commands sent while it is down, nothing more.
//!
//! Keys (under `visavis:`): `room:<id>` the room's snapshot (JSON, `Snapshot::split`);
//! `lease:<id>` the node holding the room, with a TTL; `nodes` a hash node → entry; `secret`
//! the secret nodes show each other when forwarding a connection. Writes of a room's snapshot
//! are fenced by its lease: a node that lost a room cannot overwrite it.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Value};

/// Longest any one Redis command may take before it counts as failed.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// Renews the lease `KEYS[1]` for node `ARGV[1]` for `ARGV[2]` ms, or takes it if nobody
/// holds it; 1 if this node holds it afterwards, 0 if another does.
const RENEW: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// Deletes `KEYS[1]` if the lease `KEYS[2]` is held by `ARGV[1]` (or by nobody).
const DELETE_IF_HELD: &str = r"
local holder = redis.call('GET', KEYS[2])
if holder == false or holder == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Writes `ARGV[2]` to `KEYS[1]` if the lease `KEYS[2]` is held by `ARGV[1]` (or by nobody).
const SET_IF_HELD: &str = r"
local holder = redis.call('GET', KEYS[2])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0";

const NODES: &str = "visavis:nodes";
const SECRET: &str = "visavis:secret";

fn room_key(room: &str) -> String {
    format!("visavis:room:{room}")
}

fn lease_key(room: &str) -> String {
    format!("visavis:lease:{room}")
}

/// A Redis failure, or no answer in time.
pub type Error = anyhow::Error;

/// Rooms, leases and nodes on Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    url: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("url", &self.url).finish()
    }
}

async fn bounded<T>(f: impl std::future::Future<Output = redis::RedisResult<T>>) -> Result<T, Error> {
    match tokio::time::timeout(TIMEOUT, f).await {
        Ok(result) => Ok(result?),
        Err(_) => anyhow::bail!("Redis did not answer within {TIMEOUT:?}"),
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://host:port/db`); fails if Redis cannot be reached now.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(TIMEOUT)
            .set_response_timeout(TIMEOUT)
            .set_number_of_retries(2)
            .set_max_delay(500);
        let conn = bounded(ConnectionManager::new_with_config(client, config)).await?;
        Ok(Self {
            conn,
            url: url.to_owned(),
        })
    }

    /// Where it is, for logs (the URL without a password).
    pub fn describe(&self) -> String {
        match self.url.split_once('@') {
            Some((_, host)) => format!("redis://…@{host}"),
            None => self.url.clone(),
        }
    }

    /// The cluster's secret: the one in Redis, or `mine` if there is none yet (the first node,
    /// or Redis lost its data: then the secret the nodes already share is written back); and
    /// whether it had to be written (so Redis had none).
    pub async fn secret(&self, mine: &str) -> Result<(String, bool), Error> {
        let mut conn = self.conn.clone();
        let written: Option<String> = bounded(
            redis::cmd("SET")
                .arg(SECRET)
                .arg(mine)
                .arg("NX")
                .query_async(&mut conn),
        )
        .await?;
        let secret: Option<String> = bounded(conn.get(SECRET)).await?;
        Ok((secret.unwrap_or_else(|| mine.to_owned()), written.is_some()))
    }

    /// Writes this node's registry entry, and returns every entry.
    pub async fn heartbeat(&self, node: &str, entry: &str) -> Result<Vec<(String, String)>, Error> {
        let mut conn = self.conn.clone();
        let (_, all): (Value, Vec<(String, String)>) = bounded(
            redis::pipe()
                .hset(NODES, node, entry)
                .hgetall(NODES)
                .query_async(&mut conn),
        )
        .await?;
        Ok(all)
    }

    /// Removes these nodes' entries (this one at a graceful stop, or long-dead ones).
    pub async fn forget_nodes(&self, nodes: &[&str]) -> Result<(), Error> {
        let mut conn = self.conn.clone();
        bounded(conn.hdel::<_, _, ()>(NODES, nodes)).await
    }

    /// The node holding `room`'s lease, if any.
    pub async fn holder(&self, room: &str) -> Result<Option<String>, Error> {
        let mut conn = self.conn.clone();
        bounded(conn.get(lease_key(room))).await
    }

    /// Takes `room`'s lease for `node` if nobody holds it; whether it did.
    pub async fn acquire(&self, room: &str, node: &str, ttl: Duration) -> Result<bool, Error> {
        let mut conn = self.conn.clone();
        let set: Option<String> = bounded(
            redis::cmd("SET")
                .arg(lease_key(room))
                .arg(node)
                .arg("NX")
                .arg("PX")
                .arg(ms(ttl))
                .query_async(&mut conn),
        )
        .await?;
        Ok(set.is_some())
    }

    /// Renews (or takes) the leases of `rooms` for `node`, in one round trip; for each room,
    /// whether `node` holds it now.
    pub async fn renew(&self, rooms: &[String], node: &str, ttl: Duration) -> Result<Vec<bool>, Error> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for room in rooms {
            pipe.cmd("EVAL")
                .arg(RENEW)
                .arg(1)
                .arg(lease_key(room))
                .arg(node)
                .arg(ms(ttl));
        }
        let mut conn = self.conn.clone();
        let held: Vec<i64> = bounded(pipe.query_async(&mut conn)).await?;
        Ok(held.into_iter().map(|h| h == 1).collect())
    }

    /// Gives back the leases of `rooms` that `node` holds.
    pub async fn release(&self, rooms: &[String], node: &str) -> Result<(), Error> {
        if rooms.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for room in rooms {
            // The lease itself is "held" by its own key: delete it if it names this node.
            pipe.cmd("EVAL")
                .arg(DELETE_IF_HELD)
                .arg(2)
                .arg(lease_key(room))
                .arg(lease_key(room))
                .arg(node)
                .ignore();
        }
        let mut conn = self.conn.clone();
        bounded(pipe.query_async::<()>(&mut conn)).await
    }

    /// `room`'s stored snapshot, if any.
    pub async fn load_room(&self, room: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut conn = self.conn.clone();
        bounded(conn.get(room_key(room))).await
    }

    /// Writes the snapshots of `rooms` and deletes those of `gone`, in one round trip, each
    /// only where `node` holds the room's lease (or nobody does).
    pub async fn save_rooms(
        &self,
        rooms: &[(String, Vec<u8>)],
        gone: &[String],
        node: &str,
    ) -> Result<(), Error> {
        if rooms.is_empty() && gone.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (room, bytes) in rooms {
            pipe.cmd("EVAL")
                .arg(SET_IF_HELD)
                .arg(2)
                .arg(room_key(room))
                .arg(lease_key(room))
                .arg(node)
                .arg(bytes.as_slice())
                .ignore();
        }
        for room in gone {
            pipe.cmd("EVAL")
                .arg(DELETE_IF_HELD)
                .arg(2)
                .arg(room_key(room))
                .arg(lease_key(room))
                .arg(node)
                .ignore();
        }
        let mut conn = self.conn.clone();
        bounded(pipe.query_async::<()>(&mut conn)).await
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
