//! Command-line options and environment variables: every setting of the server, with its default.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// visavis: self-hosted audio/video calls in the browser.
///
/// Serves the web app and the WebSocket signalling endpoint `/ws`. Every option can also be
/// set with the environment variable named beside it.
#[derive(Debug, Clone, Parser)]
#[command(name = "visavis", version, about, long_about)]
pub struct Settings {
    /// Address and port to serve HTTP and WebSocket on.
    #[arg(long, env = "VISAVIS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Most members one room may hold; one more gets a `room_full` error.
    #[arg(long, env = "VISAVIS_ROOM_CAPACITY", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub room_capacity: u32,

    /// Seconds an invite rings before it ends as "no answer".
    #[arg(long, env = "VISAVIS_RING_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub ring_timeout: u64,

    /// Largest signalling message accepted, in bytes; larger ones get a `message_too_large`
    /// error. Frames over 16 times this close the connection.
    #[arg(long, env = "VISAVIS_MAX_MESSAGE_SIZE", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=16 * 1024 * 1024))]
    pub max_message_size: u64,

    /// Messages queued for one slow client before it is disconnected (close code 1008).
    #[arg(long, env = "VISAVIS_OUTBOUND_QUEUE", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(8..=65_536))]
    pub outbound_queue: u32,
}

impl Settings {
    /// The settings with every default, as `visavis` with no arguments runs.
    pub fn defaults() -> Self {
        Self::parse_from(["visavis"])
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout)
    }

    pub fn max_message_size(&self) -> usize {
        usize::try_from(self.max_message_size).unwrap_or(usize::MAX)
    }
}
