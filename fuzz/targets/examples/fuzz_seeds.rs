//! Write every fuzz target's seed inputs (real encodings: handshakes, requests, signed
//! packages, ...) under DIR/TARGET/, one file per input, named by its SHA-256 like libFuzzer's.
//!
//! `cargo run --release -p smon-fuzz-targets --example fuzz_seeds -- DIR`

use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
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
