//! `logs MACHINE [APP] [-n N] [--follow] [--since DURATION]`: a machine's log, read by its own
//! peer and reached through any peer (`log_follow.rs`), written to standard output as the
//! file holds it. Notes (lines left out, a rotated file, a lost peer) go to standard error.

use std::io::Write;

use crate::{
    cli::LogsArgs,
    cluster_dir::ClusterDir,
    log_follow::{LogError, LogFollower, LogTarget, Reach},
};

pub async fn run(dir: ClusterDir, args: LogsArgs) -> anyhow::Result<()> {
    let target = LogTarget::new(args.machine, args.app)?;
    let mut follower = LogFollower::new(Reach::Dir(std::sync::Arc::new(dir)), target.clone());
    let first = follower.tail(args.lines, args.since).await?;
    let mut out = std::io::stdout().lock();
    if first.cut {
        eprintln!(
            "smon-console: older lines of {target} were left out (at most {} lines and {} bytes \
             per answer)",
            smon_proto::LOG_MAX_LINES,
            smon_proto::LOG_MAX_BYTES
        );
    }
    if first.untimed {
        eprintln!(
            "smon-console: {target} has no times at the start of its lines: --since kept them all"
        );
    }
    out.write_all(&first.data)?;
    out.flush()?;
    if !args.follow {
        return Ok(());
    }
    let mut lost = false;
    loop {
        match follower.next().await {
            Ok(chunk) => {
                if lost {
                    eprintln!("smon-console: {target}: answering again");
                    lost = false;
                }
                if chunk.restarted {
                    eprintln!("smon-console: {target} was rotated or truncated: from its start");
                }
                out.write_all(&chunk.data)?;
                out.flush()?;
            }
            Err(LogError::Lost(e)) => {
                if !lost {
                    eprintln!("smon-console: {e} (trying again)");
                    lost = true;
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(e @ LogError::Refused(_)) => return Err(e.into()),
        }
    }
}
