//! `smon-sim`: a deterministic discrete-event simulation of a whole cluster in virtual time,
//! running the real [`crate::core::Core`] of every peer. Same seed, same output.

mod params;
mod report;
mod scenario;
mod view_watch;
mod world;

pub use params::SimParams;
pub use report::Report;
pub use scenario::{NEXT_VERSION, Options, Scenario, deployed_world, run};
pub use world::{FIRST_VERSION, World, machine_name};
