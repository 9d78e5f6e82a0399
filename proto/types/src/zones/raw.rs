//! From machine names to the raw hierarchy: DNS labels, or address prefixes, as zone names
//! (paper 002, §2.1: zones follow the names' structure where they have one).

use super::*;

/// The labels of a machine, from the top of the hierarchy down; the last one is the machine
/// itself. Labels starting with `#` cannot be DNS labels, so kinds of names never mix.
pub(super) fn labels(machine: &MachineId) -> Vec<String> {
    let full = machine.to_string();
    let MachineId::Ssh { host, .. } = machine else {
        return vec!["#local".into(), full];
    };
    // Canonical already (`MachineId::parse_entry`): lower case, no trailing dot.
    let host = host.clone();
    let mut labels: Vec<String> = if let Ok(v4) = host.parse::<Ipv4Addr>() {
        let o = v4.octets();
        let mut l = vec!["#ipv4".to_string()];
        l.extend(o[..3].iter().map(|x| format!("{x:03}")));
        l
    } else if let Ok(v6) = host.parse::<Ipv6Addr>() {
        let s = v6.segments();
        let mut l = vec!["#ipv6".to_string()];
        l.extend(s[..7].iter().map(|x| format!("{x:04x}")));
        l
    } else if let Some((_, domain)) = host.split_once('.') {
        domain.rsplit('.').map(str::to_owned).collect()
    } else {
        vec!["#hosts".into()]
    };
    labels.push(host);
    labels.push(full);
    labels
}

/// The zone name of a label path (a prefix of some machine's labels).
pub(super) fn zone_name(labels: &[String]) -> String {
    let Some(kind) = labels.first() else {
        return ".".into();
    };
    match kind.as_str() {
        "#local" => "local:".into(),
        "#hosts" if labels.len() == 1 => "hosts".into(),
        "#ipv4" if labels.len() <= 4 => {
            let mut o: Vec<String> = labels[1..]
                .iter()
                .map(|x| x.trim_start_matches('0').to_string())
                .map(|x| if x.is_empty() { "0".into() } else { x })
                .collect();
            let bits = 8 * o.len();
            o.resize(4, "0".into());
            format!("{}/{bits}", o.join("."))
        }
        "#ipv6" if labels.len() <= 8 => {
            let groups: Vec<&str> = labels[1..].iter().map(|g| g.as_str()).collect();
            format!("{}::/{}", groups.join(":"), 16 * groups.len())
        }
        "#ipv4" | "#ipv6" | "#hosts" => labels.last().cloned().unwrap_or_default(),
        _ => {
            // DNS: the labels read from the right; below the domain, the host itself.
            let mut l: Vec<&str> = labels.iter().map(String::as_str).collect();
            if l.last().is_some_and(|h| h.contains('.')) && l.len() > 1 {
                return l.pop().unwrap_or_default().to_string();
            }
            l.reverse();
            l.join(".")
        }
    }
}

pub(super) struct RawNode {
    pub(super) name: String,
    pub(super) kids: Vec<RawKid>,
    pub(super) size: usize,
}

pub(super) enum RawKid {
    Machine(u32),
    Node(RawNode),
}

/// The trie of `items` (sorted), which all share their first `depth` labels.
pub(super) fn raw_node(items: &[(Vec<String>, u32)], depth: usize, name: String) -> RawNode {
    let mut kids = Vec::new();
    let mut i = 0;
    while i < items.len() {
        let (labels, machine) = &items[i];
        if labels.len() <= depth + 1 {
            kids.push(RawKid::Machine(*machine));
            i += 1;
            continue;
        }
        let label = &labels[depth];
        let end = i + items[i..]
            .iter()
            .position(|(l, _)| l.len() <= depth + 1 || &l[depth] != label)
            .unwrap_or(items.len() - i);
        let kid_name = zone_name(&labels[..=depth]);
        kids.push(RawKid::Node(raw_node(&items[i..end], depth + 1, kid_name)));
        i = end;
    }
    RawNode {
        name,
        kids,
        size: items.len(),
    }
}
