//! Shaping the raw hierarchy: tiny zones packed, big ones split, so that every zone's fan-out
//! stays within [`FAN_MIN`]..[`FAN_MAX`] and a leaf holds at most [`LEAF_MAX`] machines.

use super::raw::*;
use super::*;

pub(super) enum Shaped {
    /// `None`: a zone made by packing or splitting; named after its parent.
    Leaf {
        name: Option<String>,
        machines: Vec<u32>,
    },
    Inner {
        name: Option<String>,
        kids: Vec<Shaped>,
    },
    Placeholder,
}

impl Shaped {
    pub(super) fn leaf_size(&self) -> Option<usize> {
        match self {
            Shaped::Leaf { machines, .. } => Some(machines.len()),
            _ => None,
        }
    }
}

pub(super) fn machines_of(node: RawNode, out: &mut Vec<u32>) {
    for kid in node.kids {
        match kid {
            RawKid::Machine(m) => out.push(m),
            RawKid::Node(n) => machines_of(n, out),
        }
    }
}

/// The name of the deepest zone that still holds all of `node`'s machines.
pub(super) fn specific_name(node: &RawNode) -> &str {
    match node.kids.as_slice() {
        [RawKid::Node(only)] => specific_name(only),
        _ => &node.name,
    }
}

pub(super) fn named(name: String) -> Option<String> {
    (!name.is_empty()).then_some(name)
}

pub(super) fn shape(node: RawNode) -> Shaped {
    if node.size <= LEAF_MAX {
        let name = named(specific_name(&node).to_owned());
        let mut machines = Vec::with_capacity(node.size);
        machines_of(node, &mut machines);
        return Shaped::Leaf { name, machines };
    }
    let name = node.name;
    let mut kids = Vec::with_capacity(node.kids.len());
    for kid in node.kids {
        match kid {
            RawKid::Machine(m) => kids.push(Shaped::Leaf {
                name: None,
                machines: vec![m],
            }),
            RawKid::Node(n) => match shape(n) {
                // A zone of few children adds a level for little: its children join ours.
                Shaped::Inner { kids: grand, .. } if grand.len() < FAN_MIN => kids.extend(grand),
                shaped => kids.push(shaped),
            },
        }
    }
    let mut kids = split(pack_leaves(kids));
    if kids.len() == 1 {
        return kids.pop().expect("one kid");
    }
    Shaped::Inner {
        name: named(name),
        kids,
    }
}

/// Pack each run of consecutive sibling leaf zones into as few leaf zones of at most
/// [`LEAF_MAX`] machines as it takes, of about equal size.
pub(super) fn pack_leaves(kids: Vec<Shaped>) -> Vec<Shaped> {
    let mut out = Vec::with_capacity(kids.len());
    let mut run: Vec<Shaped> = Vec::new();
    for kid in kids {
        if kid.leaf_size().is_some() {
            run.push(kid);
        } else {
            flush_run(&mut run, &mut out);
            out.push(kid);
        }
    }
    flush_run(&mut run, &mut out);
    out
}

pub(super) fn flush_run(run: &mut Vec<Shaped>, out: &mut Vec<Shaped>) {
    if run.len() <= 1 {
        out.append(run);
        return;
    }
    let mut left: usize = run.iter().filter_map(Shaped::leaf_size).sum();
    let mut packs_left = left.div_ceil(LEAF_MAX);
    let mut group: Vec<Shaped> = Vec::new();
    let mut size = 0;
    for kid in run.drain(..) {
        let n = kid.leaf_size().unwrap_or(0);
        // Aim at an equal share of what is left, so the last pack is not a crumb.
        let target = left.div_ceil(packs_left.max(1));
        if !group.is_empty() && (size >= target || size + n > LEAF_MAX) {
            out.push(merge_leaves(std::mem::take(&mut group)));
            left -= size;
            packs_left = packs_left.saturating_sub(1);
            size = 0;
        }
        size += n;
        group.push(kid);
    }
    if !group.is_empty() {
        out.push(merge_leaves(group));
    }
}

pub(super) fn merge_leaves(mut group: Vec<Shaped>) -> Shaped {
    if group.len() == 1 {
        return group.pop().expect("one");
    }
    let mut machines = Vec::new();
    for g in group {
        if let Shaped::Leaf { machines: m, .. } = g {
            machines.extend(m);
        }
    }
    Shaped::Leaf {
        name: None,
        machines,
    }
}

/// More than [`FAN_MAX`] children: group consecutive ones under new zones, as evenly as
/// possible, with about the same fan-out on each of the levels it takes.
pub(super) fn split(kids: Vec<Shaped>) -> Vec<Shaped> {
    let len = kids.len();
    if len <= FAN_MAX {
        return kids;
    }
    // The fewest levels h that can hold them, and the smallest fan-out f with f^h >= len.
    let mut levels = 1u32;
    while FAN_MAX.pow(levels) < len {
        levels += 1;
    }
    let mut fan = 2usize;
    while fan.pow(levels) < len {
        fan += 1;
    }
    let groups = len.div_ceil(fan.pow(levels - 1));
    let (base, extra) = (len / groups, len % groups);
    let mut rest = kids.into_iter();
    (0..groups)
        .map(|g| Shaped::Inner {
            name: None,
            kids: split(rest.by_ref().take(base + usize::from(g < extra)).collect()),
        })
        .collect()
}
