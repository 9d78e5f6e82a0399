//! Machine ids: the entries of the membership list.
//!
//! `[user@]host[:port]` is an SSH machine (the pssh host-file form; IPv6 in brackets),
//! `local:NAME` is a machine that is a directory on this host.
//!
//! Every entry is parsed into one canonical form, so that two spellings of one account are
//! one machine wherever machines are compared or keyed (lists, pins, records, pongs): the
//! host in lower case (DNS names are case-insensitive, RFC 4343) without a trailing dot (the
//! root label, RFC 1034 3.1), an IPv6 address compressed as RFC 5952 writes it, and the port
//! explicit (22 when none is written, as `ssh` does). The user stays as written: an entry
//! without one is logged into as the user of whichever process logs in.

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
        let host = canonical_host(host).map_err(|e| format!("{text:?}: {e}"))?;
        // Written without a user, host `local` would read back as `local:NAME`, a local
        // machine (found by fuzzing the known_hosts path: `local.` became `local:22`).
        if user.is_none() && host == "local" {
            return Err(format!(
                "{text:?}: host name \"local\" without a user reads as a local machine \
                 (local:NAME); write USER@local or the host's full name"
            ));
        }
        Ok(MachineId::Ssh {
            user,
            host,
            port: Some(port.unwrap_or(DEFAULT_SSH_PORT)),
        })
    }
}

/// The port an SSH machine is reached on when its entry names none.
pub const DEFAULT_SSH_PORT: u16 = 22;

/// The canonical spelling of a host (see the module's doc): an IPv6 address compressed
/// (`0:0:0:0:0:0:0:1` is `::1`), a name or IPv4 address in lower case without its trailing
/// dot. Errors: a name that is only dots. Also what known_hosts patterns are matched by.
pub fn canonical_host(host: &str) -> Result<String, String> {
    if let Ok(v6) = host.parse::<std::net::Ipv6Addr>() {
        return Ok(v6.to_string());
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || host.starts_with('.') || host.contains("..") {
        return Err(format!("bad host name {host:?} (empty label)"));
    }
    Ok(name.to_ascii_lowercase())
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
            "host.example.org:22",
            "alice@host:22",
            "alice@host:2222",
            "10.0.0.1:22",
            "bob@[::1]:2200",
            "[fe80::1]:22",
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

    /// Every machine a line parses to prints back as itself: host `local` without a user
    /// would print as a local machine's `local:NAME` (a fuzzing finding, known_hosts target).
    #[test]
    fn host_local_without_a_user_is_refused_as_it_would_read_back_as_a_local_machine() {
        for text in ["local.", "LOCAL:22", "local.:2222", "Local"] {
            let err = MachineId::parse_entry(text).unwrap_err();
            assert!(err.contains("reads as a local machine"), "{text}: {err}");
        }
        let m = MachineId::parse_entry("alice@local.").unwrap();
        assert_eq!(m.to_string().parse::<MachineId>().unwrap(), m);
        assert_eq!(
            MachineId::parse_entry("local:m1").unwrap(),
            MachineId::local("m1")
        );
    }

    /// Issue 15 kind 5: the spellings of one account are one machine, printed one way.
    #[test]
    fn spellings_of_one_machine_are_one_canonical_machine() {
        for (spellings, canonical) in [
            (
                &[
                    "alice@box2:2222",
                    "alice@BOX2:2222",
                    "alice@box2.:2222",
                    "alice@Box2.:2222",
                ][..],
                "alice@box2:2222",
            ),
            (
                &["[::1]:2222", "[0:0:0:0:0:0:0:1]:2222", "[0::1]:2222"][..],
                "[::1]:2222",
            ),
            (&["box3", "box3:22", "BOX3.", "box3.:22"][..], "box3:22"),
            (&["10.0.0.1", "10.0.0.1:22"][..], "10.0.0.1:22"),
            (
                &[
                    "[2001:DB8::1]",
                    "[2001:0db8:0000:0000:0000:0000:0000:0001]:22",
                ][..],
                "[2001:db8::1]:22",
            ),
            (
                &["u@[FE80:0:0:0:0:0:0:1]:2200", "u@[fe80::1]:2200"][..],
                "u@[fe80::1]:2200",
            ),
            (&["Host.Example.ORG."][..], "host.example.org:22"),
            (&["local:Mixed"][..], "local:Mixed"),
        ] {
            for text in spellings {
                let m: MachineId = text.parse().unwrap();
                assert_eq!(m.to_string(), canonical, "{text}");
                // The canonical form parses to itself.
                assert_eq!(canonical.parse::<MachineId>().unwrap(), m, "{text}");
            }
        }
        // What stays apart: other users, other ports, other hosts, user or none.
        let distinct = [
            "alice@box2:2222",
            "bob@box2:2222",
            "alice@box2:2223",
            "box2:2222",
            "alice@box3:2222",
            "[::1]:22",
            "[::2]:22",
            "127.0.0.1:22",
            "127.0.0.2:22",
        ];
        let set: std::collections::HashSet<MachineId> =
            distinct.iter().map(|t| t.parse().unwrap()).collect();
        assert_eq!(set.len(), distinct.len());
        // The user keeps its case: account names are case-sensitive.
        assert_eq!(
            "Alice@h".parse::<MachineId>().unwrap().to_string(),
            "Alice@h:22"
        );
    }

    #[test]
    fn canonical_hosts() {
        assert_eq!(canonical_host("Box.").unwrap(), "box");
        assert_eq!(canonical_host("0:0::1").unwrap(), "::1");
        assert_eq!(
            canonical_host("::FFFF:10.0.0.1").unwrap(),
            "::ffff:10.0.0.1"
        );
        for bad in [".", "..", "a..b", ".a", "b.."] {
            assert!(canonical_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compares_names_like_strings() {
        let names = [
            "a:22", "ab:22", "b:22", "local:x", "u@h:1", "u@h:12", "[::1]:22",
        ];
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
            "box..example",
            ".",
            "a@.:22",
        ] {
            assert!(
                MachineId::parse_entry(text).is_err(),
                "{text:?} should be refused"
            );
        }
    }
}
