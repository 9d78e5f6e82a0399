//! The daemon's clock: the wall-clock milliseconds it feeds the core (the simulator feeds
//! virtual ones).

use std::time::{SystemTime, UNIX_EPOCH};

use crate::core::Millis;

/// Milliseconds since the Unix epoch (0 if the clock is set before it).
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}
