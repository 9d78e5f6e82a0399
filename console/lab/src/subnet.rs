//! Each lab takes a /24 of 198.18.0.0/15 (RFC 2544's benchmarking range) that no other live
//! lab or namespace uses. The choice and the bridge address that marks it as taken are made
//! under one host-wide lock, so parallel `up`s never pick the same one.

use std::{collections::HashSet, net::Ipv4Addr, os::fd::AsRawFd, path::Path};

use crate::{
    error::{LabError, Result},
    run,
};

/// RFC 2544: 198.18.0.0/15, set aside for benchmarking labs.
pub const RANGE: (Ipv4Addr, u8) = (Ipv4Addr::new(198, 18, 0, 0), 15);
/// The host-wide lock of the choice.
const LOCK: &str = "/run/smon-lab.lock";
/// Namespaces of our own labs: their /24 is marked on the host by their bridge address.
const OWN_NETNS_PREFIX: &str = "smon-lab-";

/// The /24 (network address) that `addr` is in, if it is in 198.18.0.0/15.
fn slot_of(addr: Ipv4Addr) -> Option<u32> {
    let (base, len) = RANGE;
    let mask = u32::MAX << (32 - len);
    (u32::from(addr) & mask == u32::from(base)).then(|| (u32::from(addr) - u32::from(base)) >> 8)
}

/// The /24 slots in use: any address or route in the range, on the host or in a namespace
/// that is not one of our labs'.
fn slots_in_use() -> Result<HashSet<u32>> {
    let mut text = run::ip(&["-4", "-o", "addr", "show"])?;
    text += &run::ip(&["-4", "route", "show", "table", "all"])?;
    for line in run::ip(&["netns", "list"])?.lines() {
        let Some(ns) = line.split_whitespace().next() else {
            continue;
        };
        if !ns.starts_with(OWN_NETNS_PREFIX) {
            // A namespace that vanished meanwhile uses nothing.
            text += &run::ip(&["-n", ns, "-4", "-o", "addr", "show"]).unwrap_or_default();
        }
    }
    Ok(used_in(&text))
}

/// Slots of every `a.b.c.d` (with or without a prefix length) in `text`. A prefix wider
/// than /24 marks every /24 it covers.
fn used_in(text: &str) -> HashSet<u32> {
    let mut used = HashSet::new();
    for word in text.split_whitespace() {
        let (addr, len) = match word.split_once('/') {
            Some((a, l)) => (a, l.parse::<u8>().unwrap_or(32)),
            None => (word, 32),
        };
        let Ok(addr) = addr.parse::<Ipv4Addr>() else {
            continue;
        };
        if len < 24 {
            // Every /24 of the range this prefix covers.
            let size = 1u64 << (32 - len as u64);
            let start = u32::from(addr) as u64 & !(size - 1);
            let range_start = u32::from(RANGE.0) as u64;
            let range_end = range_start + (1u64 << (32 - RANGE.1));
            let (lo, hi) = (start.max(range_start), (start + size).min(range_end));
            let mut a = lo;
            while a < hi {
                used.extend(slot_of(Ipv4Addr::from(a as u32)));
                a += 256;
            }
        } else if let Some(slot) = slot_of(addr) {
            used.insert(slot);
        }
    }
    used
}

/// Choose a free /24 and call `claim` with its network address while holding the host-wide
/// lock; `claim` must mark it as taken (give the bridge its address) before returning.
pub fn choose_and_claim(claim: impl FnOnce(Ipv4Addr) -> Result<()>) -> Result<Ipv4Addr> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK)
        .map_err(LabError::io(LOCK))?;
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(LabError::io(Path::new(LOCK))(
            std::io::Error::last_os_error(),
        ));
    }
    let used = slots_in_use()?;
    let slots = 1u32 << (24 - RANGE.1);
    let free: Vec<u32> = (0..slots).filter(|s| !used.contains(s)).collect();
    if free.is_empty() {
        return Err(LabError::NoSubnet);
    }
    // A random free slot: unlikely to meet a lab of some other tool that ignores the lock.
    let slot = free[rand::random_range(0..free.len())];
    let subnet = Ipv4Addr::from(u32::from(RANGE.0) + (slot << 8));
    claim(subnet)?;
    drop(lock);
    Ok(subnet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_used_slots_in_ip_output() {
        let text = "3: slab1b    inet 198.18.5.1/24 brd 198.18.5.255 scope global slab1b\n\
                    198.19.0.0/23 dev x proto kernel\n\
                    2: eth0    inet 192.0.2.2/24 brd 192.0.2.255\n\
                    10.0.0.0/8 via 192.0.2.1";
        let used = used_in(text);
        let mut v: Vec<u32> = used.into_iter().collect();
        v.sort();
        // 198.18.5.x → slot 5; 198.19.0.0/23 → slots 256 and 257.
        assert_eq!(v, vec![5, 256, 257]);
    }

    #[test]
    fn a_route_covering_the_whole_range_takes_every_slot() {
        assert_eq!(used_in("198.0.0.0/8 dev y").len(), 512);
    }

    #[test]
    fn slots_only_inside_the_range() {
        assert_eq!(slot_of(Ipv4Addr::new(198, 18, 0, 1)), Some(0));
        assert_eq!(slot_of(Ipv4Addr::new(198, 19, 255, 254)), Some(511));
        assert_eq!(slot_of(Ipv4Addr::new(198, 20, 0, 1)), None);
        assert_eq!(slot_of(Ipv4Addr::new(198, 17, 255, 1)), None);
    }
}
