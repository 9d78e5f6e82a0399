//! The bodies of smon's fuzz targets, one module per decoder, each reached the way the network
//! or the disk reaches it and checked for the invariants its format promises.
//!
//! Every target is a `run(data: &[u8])` that returns normally on any input, however malformed,
//! and panics only on a broken invariant. The cargo-fuzz binaries (`fuzz/fuzz_targets/`) call
//! these functions under libFuzzer; the replay test (`tests/replay.rs`) calls the same
//! functions on every committed input (`fuzz/corpus/TARGET/`, `fuzz/regressions/TARGET/`), so
//! that `cargo test` checks each of them on the stable toolchain. `fuzz-seeds` writes the seed
//! inputs each module's `seeds()` makes from real encodings.

pub mod app_package;
pub mod app_toml;
mod io;
pub mod keys;
pub mod known_hosts;
pub mod machines_file;
pub mod membership;
pub mod noise_frames;
pub mod noise_handshake;
pub mod release_package;
pub mod rpc;
pub mod userauth;

/// One fuzz target: its name (the binary's and the corpus directory's), its body, its seeds.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// libFuzzer's `-max_len` for it: room for the largest seed and then some.
    pub max_len: usize,
}

/// Every target, in the order `scripts/fuzz.sh` runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "noise_handshake",
        run: noise_handshake::run,
        seeds: noise_handshake::seeds,
        max_len: 4096,
    },
    Target {
        name: "noise_frames",
        run: noise_frames::run,
        seeds: noise_frames::seeds,
        max_len: 8192,
    },
    Target {
        name: "rpc_peer_request",
        run: rpc::peer_request,
        seeds: rpc::peer_request_seeds,
        max_len: 16384,
    },
    Target {
        name: "rpc_peer_reply",
        run: rpc::peer_reply,
        seeds: rpc::peer_reply_seeds,
        max_len: 16384,
    },
    Target {
        name: "rpc_agent_request",
        run: rpc::agent_request,
        seeds: rpc::agent_request_seeds,
        max_len: 16384,
    },
    Target {
        name: "rpc_agent_reply",
        run: rpc::agent_reply,
        seeds: rpc::agent_reply_seeds,
        max_len: 16384,
    },
    Target {
        name: "membership",
        run: membership::run,
        seeds: membership::seeds,
        max_len: 65536,
    },
    Target {
        name: "machines_file",
        run: machines_file::run,
        seeds: machines_file::seeds,
        max_len: 8192,
    },
    Target {
        name: "app_toml",
        run: app_toml::run,
        seeds: app_toml::seeds,
        max_len: 8192,
    },
    Target {
        name: "app_package",
        run: app_package::run,
        seeds: app_package::seeds,
        max_len: 65536,
    },
    Target {
        name: "release_package",
        run: release_package::run,
        seeds: release_package::seeds,
        max_len: 65536,
    },
    Target {
        name: "userauth",
        run: userauth::run,
        seeds: userauth::seeds,
        max_len: 20000,
    },
    Target {
        name: "known_hosts",
        run: known_hosts::run,
        seeds: known_hosts::seeds,
        max_len: 16384,
    },
];
