//! visavis's embedded STUN/TURN server core, sans-IO.
//!
//! - [`stun`]: the STUN message codec (RFC 8489) with TURN attributes and ChannelData.
//! - [`auth`]: TURN REST credentials as coturn's `use-auth-secret` mints them, long-term
//!   keys, stateless expiring nonces.
//! - [`policy`]: which peer addresses a relay may reach (safe by default).
//! - [`server`]: the TURN state machine: allocations, permissions, channels, quotas, rate
//!   limits. Like the room core it takes the time as input (a `visavis_sansio::Now`), says
//!   when it next needs it (`poll_timeout`) and never does IO; the server crate owns the
//!   sockets.

pub mod auth;
pub mod policy;
pub mod server;
pub mod stun;

pub use auth::{long_term_key, member_user, Nonces, RestSecret};
pub use policy::{Cidr, PeerPolicy};
pub use server::{ClientAddr, Output, Transport, TurnConfig, TurnCounts, TurnServer};
