//! Every committed fuzz input, replayed through its target's body: the minimised corpus each
//! campaign kept (`fuzz/corpus/TARGET/`) and the inputs of past findings
//! (`fuzz/regressions/TARGET/`). Also: the seeds still run, and the target list, the fuzz
//! binaries and the corpus directories name the same targets.

use std::path::{Path, PathBuf};

use smon_fuzz_targets::{TARGETS, Target};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("fuzz/")
        .to_owned()
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("a directory entry").path())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"))
}

/// Replay the corpus and the regressions of `name`; the corpus must be there.
fn replay(name: &str) {
    let t = target(name);
    let corpus = inputs(&fuzz_dir().join("corpus").join(name));
    assert!(
        corpus.len() >= 5,
        "fuzz/corpus/{name} holds {} inputs: run scripts/fuzz.sh and commit its corpus",
        corpus.len()
    );
    let regressions = inputs(&fuzz_dir().join("regressions").join(name));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).expect("a corpus file");
        assert!(
            data.len() <= t.max_len,
            "{} is over -max_len",
            path.display()
        );
        (t.run)(&data);
    }
}

macro_rules! replay_tests {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { replay(stringify!($name)); })*
        const REPLAYED: &[&str] = &[$(stringify!($name)),*];
    };
}

replay_tests!(
    noise_handshake,
    noise_frames,
    rpc_peer_request,
    rpc_peer_reply,
    rpc_agent_request,
    rpc_agent_reply,
    membership,
    machines_file,
    app_toml,
    app_package,
    release_package,
    userauth,
    known_hosts,
);

#[test]
fn every_target_has_a_fuzz_binary_a_replay_test_and_runs_its_seeds() {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, REPLAYED, "TARGETS and the replay tests differ");
    let mut binaries: Vec<String> = inputs(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
        .collect();
    binaries.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(binaries, sorted, "fuzz/fuzz_targets/ and TARGETS differ");
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for t in TARGETS {
        assert!(
            manifest.contains(&format!("name = \"{}\"", t.name)),
            "{} is not a [[bin]] of fuzz/Cargo.toml",
            t.name
        );
        for seed in (t.seeds)() {
            assert!(
                seed.len() <= t.max_len,
                "a seed of {} is over -max_len",
                t.name
            );
            (t.run)(&seed);
        }
    }
}
