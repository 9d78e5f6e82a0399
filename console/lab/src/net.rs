//! The lab's network: one bridge on the host, one network namespace per machine joined to it
//! by a veth pair; partitions, rate limits, and their removal. iproute2 only (`ip`, `tc`):
//! this kernel has neither netem nor tc's drop action, so a partition is made with neighbour
//! entries (below) and a slow link with tbf.

use std::{net::Ipv4Addr, process::Command};

use crate::{
    error::{LabError, Result},
    layout::LabState,
    run,
};

/// A unicast MAC that no interface has. A machine that resolves the other side's addresses to
/// it sends frames that the bridge floods and every receiver drops as not its own: packets
/// vanish silently, as across a real partition (timeouts, not instant refusals), whatever the
/// host's ip_forward says.
const NOWHERE_MAC: &str = "02:00:00:00:00:00";

const GONE: &[&str] = &[
    "Cannot find device",
    "No such device",
    "No such file",
    "does not exist",
];

/// Make the lab's bridge with the host's address: this marks the /24 as taken.
pub fn create_bridge(lab: &LabState, subnet: Ipv4Addr) -> Result<()> {
    let bridge = lab.bridge();
    let host = Ipv4Addr::from(u32::from(subnet) + 1);
    run::ip_batch(
        None,
        &format!(
            "link add {bridge} type bridge\n\
             addr add {host}/24 dev {bridge}\n\
             link set {bridge} up\n"
        ),
    )
}

/// Make machine `host`'s namespace, its veth pair on the bridge, its address; loopback up.
/// No route but the lab's /24: nothing outside is reachable.
pub fn create_machine(lab: &LabState, host: usize) -> Result<()> {
    let (ns, veth, bridge) = (lab.netns(host), lab.veth(host), lab.bridge());
    run::ip(&["netns", "add", &ns])?;
    run::ip_batch(
        None,
        &format!(
            "link add {veth} type veth peer name eth0 netns {ns}\n\
             link set {veth} master {bridge}\n\
             link set {veth} up\n"
        ),
    )?;
    run::ip_batch(
        Some(&ns),
        &format!(
            "link set lo up\n\
             addr add {}/24 dev eth0\n\
             link set eth0 up\n",
            lab.address(host)
        ),
    )
}

/// Remove machine `host`'s namespace and veth (nothing when already gone). Its processes must
/// be dead first, or the kernel keeps the namespace (and its veth) alive.
pub fn remove_machine(lab: &LabState, host: usize) -> Result<()> {
    run::run_ignoring(
        Command::new("ip").args(["netns", "del", &lab.netns(host)]),
        GONE,
    )?;
    run::run_ignoring(
        Command::new("ip").args(["link", "del", &lab.veth(host)]),
        GONE,
    )
}

pub fn remove_bridge(lab: &LabState) -> Result<()> {
    run::run_ignoring(
        Command::new("ip").args(["link", "del", &lab.bridge()]),
        GONE,
    )
}

/// Split the lab: hosts of different `groups` cannot reach each other; hosts in no group and
/// the host's end of the bridge still reach everyone. Replaces any partition in force.
pub fn partition(lab: &LabState, groups: &[Vec<usize>]) -> Result<()> {
    heal(lab)?;
    for (g, group) in groups.iter().enumerate() {
        let others: Vec<Ipv4Addr> = groups
            .iter()
            .enumerate()
            .filter(|(o, _)| *o != g)
            .flat_map(|(_, hosts)| hosts.iter().map(|&h| lab.address(h)))
            .collect();
        let lines: String = others
            .iter()
            .map(|a| format!("neigh replace {a} lladdr {NOWHERE_MAC} dev eth0 nud permanent\n"))
            .collect();
        for &host in group {
            run::ip_batch(Some(&lab.netns(host)), &lines)?;
        }
    }
    Ok(())
}

/// Undo any partition: every machine forgets the misdirected neighbours and resolves anew.
pub fn heal(lab: &LabState) -> Result<()> {
    for host in lab.host_indices() {
        run::ip(&[
            "-n",
            &lab.netns(host),
            "neigh",
            "flush",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ])?;
    }
    Ok(())
}

/// A rate as tc takes it: a positive number and a unit (`bit`, `kbit`, `mbit`, `gbit`,
/// `bps`, `kbps`, `mbps`, `gbps`); the rate in bits per second.
pub fn parse_rate(text: &str) -> Result<u64> {
    let bad = || {
        LabError::bad(
            format!("rate {text:?}"),
            "expected a number and a unit, e.g. 1mbit, 500kbit, 2mbps (or `off`)",
        )
    };
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let factor = match unit.to_ascii_lowercase().as_str() {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        "bps" => 8.0,
        "kbps" => 8e3,
        "mbps" => 8e6,
        "gbps" => 8e9,
        _ => return Err(bad()),
    };
    let bits = number * factor;
    if !(8000.0..=1e11).contains(&bits) {
        return Err(LabError::bad(
            format!("rate {text:?}"),
            "out of range (8kbit to 100gbit)",
        ));
    }
    Ok(bits as u64)
}

/// Limit machine `host`'s link to `bits_per_second` both ways (tbf on each end of its veth),
/// or lift the limit (None).
pub fn slow(lab: &LabState, host: usize, bits_per_second: Option<u64>) -> Result<()> {
    let ends = [
        (None, lab.veth(host)),
        (Some(lab.netns(host)), "eth0".into()),
    ];
    for (ns, dev) in &ends {
        let mut cmd = Command::new("tc");
        if let Some(ns) = ns {
            cmd.args(["-n", ns]);
        }
        match bits_per_second {
            Some(rate) => {
                // Burst: 10 ms at the rate, at least a few full frames; a queue of 200 ms.
                let burst = (rate / 8 / 100).max(16 * 1024);
                cmd.args(["qdisc", "replace", "dev", dev, "root", "tbf"])
                    .args(["rate", &format!("{rate}bit")])
                    .args(["burst", &burst.to_string()])
                    .args(["latency", "200ms"]);
                run::run(&mut cmd)?;
            }
            None => {
                cmd.args(["qdisc", "del", "dev", dev, "root"]);
                run::run_ignoring(
                    &mut cmd,
                    &["No such file", "Cannot delete qdisc with handle of zero"],
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_in_tc_words() {
        assert_eq!(parse_rate("1mbit").unwrap(), 1_000_000);
        assert_eq!(parse_rate("500kbit").unwrap(), 500_000);
        assert_eq!(parse_rate("2mbps").unwrap(), 16_000_000);
        assert_eq!(parse_rate("1.5Mbit").unwrap(), 1_500_000);
        for bad in [
            "", "mbit", "1", "1 mbit", "1xbit", "-1mbit", "1bit", "0kbit", "1e3mbit",
        ] {
            let err = parse_rate(bad).unwrap_err().to_string();
            assert!(err.contains("rate"), "{bad:?}: {err}");
        }
    }
}
