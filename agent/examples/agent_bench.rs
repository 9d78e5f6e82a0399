//! Challenges resolved per second over Noise, ed25519 and RSA-3072, by an in-process agent on
//! 127.0.0.1 (audit log on, every decision committed before the answer).
//!
//! `cargo run --release -p smon-agent --example agent_bench [-- SECONDS]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::future::join_all;
use smon_agent::{key::KeySource, userauth};
use smon_proto::{ChallengeRequest, tarpc::context};

const CONNECTIONS: usize = 8;
const IN_FLIGHT: usize = 16;

async fn run(kind: &str, algorithm: &str, secs: f64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    cluster_dir(dir, &["alice@127.0.0.2"]);
    let key = KeySource::from_file(&keygen(dir, kind, ""), None).unwrap();
    let blob = key.public_key().to_bytes().unwrap();
    let (_agent, addr) = start_agent(dir, key, settings(dir, 1e9, 1e9)).await;
    let data = userauth::build(&[5; 32], "alice", algorithm, &blob);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let client = client(dir, &addr).await;
        for _ in 0..IN_FLIGHT {
            let client = client.clone();
            let data = data.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let mut ctx = context::current();
                    ctx.deadline = Instant::now() + Duration::from_secs(30);
                    let req = ChallengeRequest {
                        requester: format!("local:p{c}").parse().unwrap(),
                        target: "alice@127.0.0.2".parse().unwrap(),
                        data: data.clone(),
                    };
                    client.resolve_challenge(ctx, req).await.unwrap().unwrap();
                    n += 1;
                }
                n
            }));
        }
    }
    let total: u64 = join_all(tasks).await.into_iter().map(|r| r.unwrap()).sum();
    let elapsed = start.elapsed().as_secs_f64();
    let rows = smon_agent::audit::read(&smon_proto::ClusterFiles::new(dir).agent_audit(), 1, false)
        .unwrap()
        .len();
    println!(
        "{kind:8} {algorithm:12} {total:7} challenges in {elapsed:.2} s = {:8.0}/s \
         ({CONNECTIONS} connections x {IN_FLIGHT} in flight; audited: {})",
        total as f64 / elapsed,
        rows > 0
    );
}

#[tokio::main]
async fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5.0);
    run("ed25519", "ssh-ed25519", secs).await;
    run("rsa", "rsa-sha2-512", secs).await;
}
