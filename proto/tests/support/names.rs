//! Realistic, varied machine names for tests and the benchmark, from a seeded RNG.
//!
//! Real membership lists are made of sites, each with its own naming convention: PlanetLab
//! nodes (`slice@planetlab1.cs.princeton.edu`), numbered cluster nodes with gaps
//! (`node-0042.grid5000.example.org`, some behind a user or a port), IPv4 subnets (NATed ones
//! with a port per machine), a few IPv6 hosts, and local machines. [`machine_names`] builds
//! such a list; [`uniform_machine_names`] draws every part of every name independently, which
//! real lists never do, as a worst case for the codec.

#![allow(dead_code)] // each user of this file takes what it needs

use std::collections::HashSet;

use rand::{
    RngExt, SeedableRng,
    rngs::StdRng,
    seq::{IndexedRandom, SliceRandom},
};

const UNIVERSITIES: &[&str] = &[
    "princeton",
    "berkeley",
    "mit",
    "cmu",
    "stanford",
    "washington",
    "cornell",
    "columbia",
    "harvard",
    "yale",
    "duke",
    "rice",
    "umich",
    "uiuc",
    "utexas",
    "gatech",
    "ucsd",
    "ucla",
    "wisc",
    "umn",
    "purdue",
    "rutgers",
    "nyu",
    "upenn",
    "brown",
    "dartmouth",
    "caltech",
    "uchicago",
    "northwestern",
    "vanderbilt",
    "virginia",
    "unc",
    "arizona",
    "utah",
    "colorado",
    "oregonstate",
    "uoregon",
    "ucsb",
    "uci",
    "ucdavis",
    "ucr",
    "ucsc",
    "umass",
    "umd",
    "jhu",
    "pitt",
    "psu",
    "osu",
    "iastate",
    "ku",
    "missouri",
    "unl",
    "okstate",
    "tamu",
    "lsu",
    "ufl",
    "fsu",
    "miami",
    "clemson",
    "vt",
    "ncsu",
    "wustl",
    "rochester",
    "buffalo",
    "stonybrook",
    "rpi",
    "wpi",
    "northeastern",
    "bu",
    "tufts",
    "uconn",
    "uvm",
    "unh",
    "maine",
    "byu",
    "usu",
    "unm",
    "nmsu",
    "asu",
    "nau",
    "unlv",
    "unr",
    "boisestate",
    "uidaho",
    "wsu",
    "uw",
    "sfu",
    "ubc",
    "utoronto",
    "mcgill",
    "uwaterloo",
    "ualberta",
    "ucalgary",
    "umanitoba",
    "queensu",
    "uottawa",
    "yorku",
    "gmu",
    "odu",
    "uky",
];

const DEPARTMENTS: &[&str] = &["cs", "cs", "cs", "ece", "eecs", "csail", "cise", "ccs"];

const SLICES: &[&str] = &[
    "princeton_smon",
    "upmc_ts",
    "inria_dsl",
    "uw_oneswarm",
    "cornell_beehive",
    "nyu_d",
    "epfl_kostic",
    "ucb_bamboo",
    "arizona_stork",
    "utah_svc",
    "root",
    "site_admin",
];

const SITES: &[&str] = &[
    "grid5000",
    "emulab",
    "deterlab",
    "chameleon",
    "cloudlab",
    "geni",
    "fabric",
    "aws-east",
    "aws-west",
    "gcp-europe",
    "azure-north",
    "ovh-gra",
    "hetzner-fsn",
    "lab-b",
    "lab-c",
    "hpc",
    "render",
    "ci",
    "build",
    "storage",
    "batch",
    "web",
    "db",
    "cache",
    "edge-par",
    "edge-nyc",
    "edge-sin",
    "gpu",
    "ml",
    "kafka",
];

const DOMAINS: &[&str] = &["example.org", "example.net", "example.com", "corp.example"];

const USERS: &[&str] = &[
    "root", "smon", "admin", "deploy", "ops", "alice", "bob", "ubuntu",
];

const IPV4_PREFIXES: &[&str] = &[
    "10.0", "10.1", "10.12", "10.200", "172.16", "172.20", "192.168", "128.112", "141.212",
    "198.51",
];

const LOCAL_PREFIXES: &[&str] = &["m", "vm", "node", "sim", "test-box", "dev"];

fn maybe_user(rng: &mut StdRng, one_in: u32) -> String {
    if rng.random_range(0..one_in) == 0 {
        format!("{}@", USERS.choose(rng).unwrap())
    } else {
        String::new()
    }
}

/// PlanetLab: each university has its department and 1–3 nodes; a few slices run there.
fn planetlab(rng: &mut StdRng, out: &mut Vec<String>) {
    let slices: Vec<&str> = SLICES.sample(rng, 5).copied().collect();
    for univ in UNIVERSITIES {
        let dept = DEPARTMENTS.choose(rng).unwrap();
        let style = rng.random_range(0..4u32);
        let nodes = rng.random_range(1..=3u32);
        for node in 1..=nodes {
            let host = match style {
                0 | 1 => format!("planetlab{node}.{dept}.{univ}.edu"),
                2 => format!("planetlab-{node}.{dept}.{univ}.edu"),
                _ => format!("pl{node}.{dept}.{univ}.edu"),
            };
            for slice in &slices {
                if rng.random_range(0..10u32) < 8 {
                    out.push(format!("{slice}@{host}"));
                }
            }
        }
    }
}

/// A cluster: numbered nodes (some missing), one convention, user and port per site.
fn cluster(rng: &mut StdRng, out: &mut Vec<String>, site: &str, size: u32) {
    let domain = DOMAINS.choose(rng).unwrap();
    let style = rng.random_range(0..3u32);
    let user = maybe_user(rng, 3);
    let port = if rng.random_range(0..4u32) == 0 {
        format!(":{}", 2200 + rng.random_range(0..100u32))
    } else {
        String::new()
    };
    let first = [0, 1, 1, 100][rng.random_range(0..4usize)];
    for number in first..first + size {
        if rng.random_range(0..100u32) < 8 {
            continue; // decommissioned or down for good: gaps in the numbering
        }
        let host = match style {
            0 => format!("node-{number:04}.{site}.{domain}"),
            1 => format!("n{number}.{site}.{domain}"),
            _ => format!("{site}-{number:04}.{domain}"),
        };
        out.push(format!("{user}{host}{port}"));
    }
}

/// An IPv4 /24: most addresses used; a NATed subnet gives every machine its own port.
fn subnet(rng: &mut StdRng, out: &mut Vec<String>, prefix: &str, third: u32) {
    let user = maybe_user(rng, 2);
    let nat = rng.random_range(0..4u32) == 0;
    let fixed_port = [None, None, Some(22), Some(2222)][rng.random_range(0..4usize)];
    for host in 1..255u32 {
        if rng.random_range(0..100u32) < 25 {
            continue;
        }
        let port = match (nat, fixed_port) {
            (true, _) => format!(":{}", 20000 + host),
            (false, Some(p)) => format!(":{p}"),
            (false, None) => String::new(),
        };
        out.push(format!("{user}{prefix}.{third}.{host}{port}"));
    }
}

/// A realistic list of `count` distinct machine names, deterministic for a seed, shuffled
/// (as a file written by hand would be).
pub fn machine_names(seed: u64, count: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pool = Vec::new();
    planetlab(&mut rng, &mut pool);
    // Clusters of very different sizes, then subnets, until the pool is big enough.
    for site in SITES {
        let size = [40, 120, 300, 700, 1000][rng.random_range(0..5usize)];
        cluster(&mut rng, &mut pool, site, size);
    }
    for prefix in IPV4_PREFIXES {
        for _ in 0..rng.random_range(1..=3u32) {
            let third = rng.random_range(0..256u32);
            subnet(&mut rng, &mut pool, prefix, third);
        }
    }
    for net in 0..4u32 {
        let user = maybe_user(&mut rng, 2);
        for _ in 0..rng.random_range(20..120u32) {
            let port = if rng.random_range(0..2u32) == 0 {
                ":22"
            } else {
                ""
            };
            pool.push(format!(
                "{user}[2001:db8:{net:x}::{:x}]{port}",
                rng.random_range(1..0x10000u32)
            ));
        }
    }
    for prefix in LOCAL_PREFIXES {
        for i in 0..rng.random_range(10..80u32) {
            pool.push(format!("local:{prefix}{i:02}"));
        }
    }
    let mut seen = HashSet::with_capacity(pool.len());
    pool.retain(|name| seen.insert(name.clone()));
    assert!(
        pool.len() >= count,
        "the generator makes {} names, {count} asked",
        pool.len()
    );
    pool.shuffle(&mut rng);
    pool.truncate(count);
    pool
}

/// One name whose every part is drawn independently: no site conventions at all.
pub fn uniform_machine_name(rng: &mut StdRng) -> String {
    match rng.random_range(0..100u32) {
        0..40 => {
            let node = match rng.random_range(0..4u32) {
                0 => format!("planetlab{}", rng.random_range(1..=2u32)),
                1 => format!("planetlab-{}", rng.random_range(1..=4u32)),
                2 => format!("pl{}", rng.random_range(1..=3u32)),
                _ => format!("planetlab{}", rng.random_range(1..=12u32)),
            };
            format!(
                "{}@{node}.{}.{}.edu",
                SLICES.choose(rng).unwrap(),
                DEPARTMENTS.choose(rng).unwrap(),
                UNIVERSITIES.choose(rng).unwrap()
            )
        }
        40..70 => {
            let site = SITES.choose(rng).unwrap();
            let domain = DOMAINS.choose(rng).unwrap();
            let number = rng.random_range(0..4000u32);
            let host = match rng.random_range(0..3u32) {
                0 => format!("node-{number:04}.{site}.{domain}"),
                1 => format!("n{number}.{site}.{domain}"),
                _ => format!("{site}-{number:04}.{domain}"),
            };
            let user = maybe_user(rng, 4);
            let port = if rng.random_range(0..5u32) == 0 {
                format!(":{}", 2200 + rng.random_range(0..100u32))
            } else {
                String::new()
            };
            format!("{user}{host}{port}")
        }
        70..90 => {
            let user = maybe_user(rng, 3);
            let port = if rng.random_range(0..3u32) == 0 {
                format!(
                    ":{}",
                    [22u32, 2222, 2022, 10022][rng.random_range(0..4usize)]
                )
            } else {
                String::new()
            };
            format!(
                "{user}{}.{}.{}{port}",
                IPV4_PREFIXES.choose(rng).unwrap(),
                rng.random_range(0..32u32),
                rng.random_range(1..255u32)
            )
        }
        90..95 => {
            let user = maybe_user(rng, 2);
            let port = if rng.random_range(0..2u32) == 0 {
                ":22"
            } else {
                ""
            };
            format!(
                "{user}[2001:db8:{:x}::{:x}]{port}",
                rng.random_range(0..16u32),
                rng.random_range(1..0x1000u32)
            )
        }
        _ => format!(
            "local:{}{}",
            LOCAL_PREFIXES.choose(rng).unwrap(),
            rng.random_range(0..5000u32)
        ),
    }
}

/// `count` distinct names of [`uniform_machine_name`], deterministic for a seed.
pub fn uniform_machine_names(seed: u64, count: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seen = HashSet::with_capacity(count);
    let mut names = Vec::with_capacity(count);
    while names.len() < count {
        let name = uniform_machine_name(&mut rng);
        // Two spellings of one machine (`h` and `h:22`, `H` and `h`) are one machine.
        let canonical = name
            .parse::<smon_proto::MachineId>()
            .map_or_else(|_| name.clone(), |m| m.to_string());
        if seen.insert(canonical) {
            names.push(name);
        }
    }
    names
}
