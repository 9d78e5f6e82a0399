//! `events [--follow] [--json]`: the changes the cluster view sees, one line each, as
//! `kubectl get events -w` and `serf monitor` print them. The view is watched through the
//! TUI's poller (`tui::poller`, with its failover) and turned into events by the TUI's model
//! (`tui::model::Model::apply`, whose diff is `view_events.rs`): the panel and this command
//! never disagree.
//!
//! Without `--follow`: the state of one view as events (each machine's peer and
//! applications, the livetag, the membership version; every zone's machines, as `status`
//! gathers them), then exit. With it: the state of the watched peer's view, then every change
//! as it is seen, until interrupted; like the TUI, it sees the machines of that peer's leaf
//! zone (all of them in a cluster of one zone).

use std::{
    io::Write,
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    cli::EventsArgs,
    cluster_dir::ClusterDir,
    connect,
    tui::{
        model::{DataMsg, Model},
        poller::Poller,
    },
    view_events::{Change, ViewEvent},
    zone_records,
};

/// One line of `events --json`.
#[derive(Serialize)]
struct EventLine<'a> {
    /// RFC 3339, UTC, milliseconds: by the source's clock where it says (a machine's record),
    /// else when the console saw it.
    time: String,
    /// The source: the machine that changed, or the peer whose view showed the change.
    machine: Option<String>,
    #[serde(flatten)]
    change: &'a Change,
}

pub async fn run(dir: &ClusterDir, args: EventsArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let wall = SystemTime::now();
    let mut model = Model::with_machines(dir.membership.machines());
    model.report_first_view = true;
    let mut printer = Printer {
        json: args.json,
        wall,
        out: std::io::stdout(),
    };
    if !args.follow {
        let mut view = connect::view(dir).await?;
        // Every zone's machines, as `status` lists them (with --via: that peer's own zone).
        if dir.via.is_none() {
            let (records, unanswered) = zone_records::all_records(dir, &view).await;
            view.records = records;
            for zone in unanswered {
                eprintln!("smon-console: records missing from zone {zone}");
            }
        }
        let events = model.apply(DataMsg::View {
            at: started.elapsed().as_secs_f64(),
            full: true,
            view: Box::new(view),
        });
        printer.print(&events)?;
        return Ok(());
    }
    let poller = Poller {
        candidates: dir.peers_to_ask().into_iter().map(|(_, a)| a).collect(),
        key: dir.key.clone(),
        every: args.every,
        started,
    };
    let (tx, mut rx) = mpsc::channel::<DataMsg>(64);
    let task = tokio::spawn(poller.run(tx));
    let result = async {
        while let Some(msg) = rx.recv().await {
            printer.print(&model.apply(msg))?;
        }
        anyhow::Ok(())
    }
    .await;
    task.abort();
    result
}

struct Printer {
    json: bool,
    /// The wall clock when the watch started (the poller's `at` counts from it).
    wall: SystemTime,
    out: std::io::Stdout,
}

impl Printer {
    /// Print and flush each event, so that a pipe sees it at once; a closed pipe ends the
    /// command quietly (as `head` expects).
    fn print(&mut self, events: &[ViewEvent]) -> anyhow::Result<()> {
        let mut out = self.out.lock();
        for event in events {
            let time = match event.source_ms {
                Some(ms) => SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
                None => self.wall + Duration::from_secs_f64(event.at),
            };
            let time = humantime::format_rfc3339_millis(time).to_string();
            let machine = event.machine.as_ref().map(ToString::to_string);
            let line = if self.json {
                serde_json::to_string(&EventLine {
                    time,
                    machine,
                    change: &event.change,
                })?
            } else {
                format!(
                    "{time} {:<24} {:<12} {}",
                    machine.as_deref().unwrap_or("-"),
                    event.change.kind(),
                    event.change.detail()
                )
            };
            let written = writeln!(out, "{line}").and_then(|()| out.flush());
            if let Err(e) = written {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    std::process::exit(0);
                }
                return Err(e.into());
            }
        }
        Ok(())
    }
}
