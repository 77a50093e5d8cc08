//! The visavis load bot: many simulated participants in one process, each joining a room
//! through the signalling protocol and the group call through the SFU (or a Janus videoroom),
//! publishing recorded media and counting what it receives.

pub mod bot;
pub mod janus;
pub mod media;
pub mod peer;
pub mod stats;
