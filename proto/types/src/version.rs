//! Peer and package versions: `MAJOR.MINOR.PATCH`, totally ordered.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::ProtoError;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Version {
    type Err = ProtoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = || ProtoError::Version {
            text: text.to_owned(),
        };
        let mut parts = text
            .trim()
            .split('.')
            .map(|p| p.parse::<u32>().map_err(|_| err()));
        let version = Version::new(
            parts.next().ok_or_else(err)??,
            parts.next().unwrap_or(Ok(0))?,
            parts.next().unwrap_or(Ok(0))?,
        );
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orders_and_prints() {
        let a: Version = "1.2.3".parse().unwrap();
        let b: Version = "1.10".parse().unwrap();
        assert!(a < b);
        assert_eq!(b.to_string(), "1.10.0");
        assert!("1.x".parse::<Version>().is_err());
        assert!("1.2.3.4".parse::<Version>().is_err());
        assert!("".parse::<Version>().is_err());
    }
}
