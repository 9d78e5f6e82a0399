//! One file per view.

pub mod apps;
pub mod log;
pub mod machines;
pub mod overhead;
pub mod overview;
