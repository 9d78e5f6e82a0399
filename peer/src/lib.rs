//! The smon peer: the sans-IO epidemic [`core`], and the deterministic simulator [`sim`] that
//! runs it in virtual time. The daemon binary `smon-peer` runs the same core on real IO.

pub mod core;
pub mod daemon;
pub mod sim;
