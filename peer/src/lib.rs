//! The smon peer: the deterministic simulator [`sim`] that runs the sans-IO epidemic [`core`]
//! (the `smon-core` crate) in virtual time, and the [`daemon`] that runs the same core on real
//! IO (binary `smon-peer`).

/// The sans-IO core, the crate `smon-core`, under its old path (`smon_peer::core`).
pub use smon_core as core;
pub mod daemon;
pub mod sim;
