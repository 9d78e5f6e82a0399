//! Machine ids: the entries of the membership list.
//!
//! `[user@]host[:port]` is an SSH machine (the pssh host-file form; IPv6 in brackets),
//! `local:NAME` is a machine that is a directory on this host.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::ProtoError;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MachineId {
    Ssh {
        user: Option<String>,
        host: String,
        port: Option<u16>,
    },
    Local {
        name: String,
    },
}

impl MachineId {
    pub fn local(name: impl Into<String>) -> Self {
        MachineId::Local { name: name.into() }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, MachineId::Local { .. })
    }

    /// The host of an SSH machine (None for `local:`).
    pub fn ssh_host(&self) -> Option<&str> {
        match self {
            MachineId::Ssh { host, .. } => Some(host),
            MachineId::Local { .. } => None,
        }
    }

    /// Parse one membership entry; the error is the reason only (callers add file and line).
    pub fn parse_entry(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty machine name".into());
        }
        if let Some(name) = text.strip_prefix("local:") {
            if name.is_empty() || !name.chars().all(is_name_char) {
                return Err(format!(
                    "{text:?}: a local machine name is letters, digits, '.', '_' or '-'"
                ));
            }
            return Ok(MachineId::local(name));
        }
        let (user, rest) = match text.split_once('@') {
            Some((user, rest)) => {
                if user.is_empty() || !user.chars().all(is_name_char) {
                    return Err(format!("{text:?}: bad user name {user:?}"));
                }
                (Some(user.to_owned()), rest)
            }
            None => (None, text),
        };
        let (host, port) = split_host_port(rest).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(MachineId::Ssh {
            user,
            host: host.to_owned(),
            port,
        })
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// The reason an IPv6 address (without brackets) is refused, if it is.
fn check_ipv6(host: &str) -> Result<(), String> {
    if let Some((_, zone)) = host.split_once('%') {
        return Err(format!(
            "zone ids (%{zone}) are not supported: a link-local address is valid on one \
             interface only; use a global or unique-local address, or a host name"
        ));
    }
    host.parse::<std::net::Ipv6Addr>()
        .map(|_| ())
        .map_err(|_| format!("bad IPv6 address {host:?}"))
}

fn split_host_port(rest: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (host, after) = inner
            .split_once(']')
            .ok_or_else(|| "unclosed '[' in IPv6 address".to_string())?;
        check_ipv6(host)?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("unexpected {after:?} after address"))?,
                ),
            ),
        }
    } else if rest.matches(':').count() > 1 {
        // Two colons or more: an IPv6 address, whose own colons a port would be confused with.
        check_ipv6(rest)?;
        return Err(format!(
            "an IPv6 address needs brackets: [{rest}] or [{rest}]:PORT"
        ));
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let bracketed = rest.starts_with('[');
    if host.is_empty() {
        return Err("empty host".into());
    }
    if !bracketed && !host.chars().all(is_name_char) {
        return Err(format!("bad host name {host:?}"));
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(format!("bad port {p:?} (1-65535)")),
            Ok(p) => Some(p),
        },
    };
    Ok((host, port))
}

impl MachineId {
    /// Compare this machine's canonical name with `name`, without allocating.
    pub fn cmp_name(&self, name: &str) -> std::cmp::Ordering {
        struct Cmp<'a> {
            rest: &'a [u8],
            ord: std::cmp::Ordering,
        }
        impl fmt::Write for Cmp<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                if self.ord.is_ne() {
                    return Ok(());
                }
                let s = s.as_bytes();
                let n = s.len().min(self.rest.len());
                self.ord = s[..n].cmp(&self.rest[..n]);
                if self.ord.is_eq() && s.len() > n {
                    self.ord = std::cmp::Ordering::Greater;
                }
                self.rest = &self.rest[n..];
                Ok(())
            }
        }
        let mut cmp = Cmp {
            rest: name.as_bytes(),
            ord: std::cmp::Ordering::Equal,
        };
        let _ = fmt::write(&mut cmp, format_args!("{self}"));
        if cmp.ord.is_eq() && !cmp.rest.is_empty() {
            return std::cmp::Ordering::Less;
        }
        cmp.ord
    }
}

impl fmt::Display for MachineId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MachineId::Local { name } => write!(f, "local:{name}"),
            MachineId::Ssh { user, host, port } => {
                if let Some(user) = user {
                    write!(f, "{user}@")?;
                }
                if host.contains(':') {
                    write!(f, "[{host}]")?;
                } else {
                    write!(f, "{host}")?;
                }
                if let Some(port) = port {
                    write!(f, ":{port}")?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for MachineId {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MachineId::parse_entry(s).map_err(ProtoError::Machine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for text in [
            "local:m1",
            "host.example.org",
            "alice@host",
            "alice@host:2222",
            "10.0.0.1:22",
            "bob@[::1]:2200",
            "[fe80::1]",
        ] {
            let m: MachineId = text.parse().unwrap();
            assert_eq!(m.to_string(), text);
        }
        let m: MachineId = "alice@127.0.0.2:2222".parse().unwrap();
        assert_eq!(
            m,
            MachineId::Ssh {
                user: Some("alice".into()),
                host: "127.0.0.2".into(),
                port: Some(2222)
            }
        );
    }

    #[test]
    fn compares_names_like_strings() {
        let names = ["a", "ab", "b", "local:x", "u@h:1", "u@h:12", "[::1]"];
        for a in names {
            for b in names {
                let m: MachineId = a.parse().unwrap();
                assert_eq!(m.cmp_name(b), a.cmp(b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn refuses_malformed_entries() {
        for text in [
            "",
            "local:",
            "local:a b",
            "@host",
            "host:",
            "host:0",
            "host:70000",
            "a@b@c",
            "[::1",
            "[zz]",
            "ho st",
            "host/x",
            "[::1]x",
        ] {
            assert!(
                MachineId::parse_entry(text).is_err(),
                "{text:?} should be refused"
            );
        }
    }
}
