//! Write every fuzz target's seed inputs (real encodings: handshakes, requests, signed
//! packages, ...) under DIR/TARGET/, one file per input, named by its SHA-256.
//!
//! `cargo run --release -p smon-fuzz-targets --example fuzz_seeds -- DIR`; with `--list`,
//! print each target's name and libFuzzer `-max_len` instead (for scripts/fuzz.sh).

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let Some(arg) = std::env::args().nth(1) else {
        eprintln!("usage: fuzz_seeds DIR | --list");
        std::process::exit(2);
    };
    if arg == "--list" {
        for target in smon_fuzz_targets::TARGETS {
            println!("{} {}", target.name, target.max_len);
        }
        return Ok(());
    }
    let dir = PathBuf::from(arg);
    for target in smon_fuzz_targets::TARGETS {
        let out = dir.join(target.name);
        std::fs::create_dir_all(&out)?;
        let seeds = (target.seeds)();
        for seed in &seeds {
            let name = hex(&smon_proto::sha256(seed)[..10]);
            std::fs::write(out.join(name), seed)?;
        }
        println!("{}: {} seeds", target.name, seeds.len());
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
