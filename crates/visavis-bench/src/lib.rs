//! visavis-bench: a load generator for WebSocket signalling servers, to compare visavis with the
//! Node stacks it replaces (the article's Koa 2 + Socket.io 2 server, and PeerServer).
//!
//! [`signal::run`] opens clients in rooms of two, has them relay messages through the server and
//! reports throughput, relay latency, errors and (given the server's pid) the server's CPU time
//! per relayed message and resident memory per idle connection. The `visavis-bench` binary is
//! its command line; `bench/signal/run.sh` runs all three servers.

mod net;
mod proto;
pub mod signal;
pub mod stats;

pub use proto::Target;
pub use signal::{Config, Mode, Report, ServerReport};
