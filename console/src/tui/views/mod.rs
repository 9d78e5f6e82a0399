//! One file per view.

pub mod apps;
pub mod machines;
pub mod overhead;
pub mod overview;
