//! Inputs per second of the `noise_frames` body on this build (stable, no coverage
//! instrumentation: a libFuzzer build is slower by its instrumentation): the committed corpus,
//! then worst-case inputs (4,096 bytes of full-frame runs, read a byte at a time).
//!
//! `cargo run --release -p smon-fuzz-targets --example noise_frames_speed`

use std::time::Instant;

use smon_fuzz_targets::noise_frames;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus/noise_frames");
    let corpus: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("the noise_frames corpus")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    let started = Instant::now();
    let rounds = 10;
    for _ in 0..rounds {
        corpus.iter().for_each(|input| noise_frames::run(input));
    }
    let n = rounds * corpus.len();
    let s = started.elapsed().as_secs_f64();
    println!(
        "corpus: {n} inputs in {s:.2} s = {:.0} inputs/s",
        n as f64 / s
    );
    // Op 1 (a run of three full frames) over and over: the longest wire a 4,096-byte input makes.
    let mut worst = vec![1u8];
    while worst.len() < 4_096 {
        worst.extend_from_slice(&[1, 0, 2, 0x61]);
    }
    let started = Instant::now();
    for _ in 0..100 {
        noise_frames::run(&worst);
    }
    let s = started.elapsed().as_secs_f64();
    println!(
        "worst case: 100 inputs in {s:.2} s = {:.0} inputs/s",
        100.0 / s
    );
}
