//! The operator's TUI: one state ([`app::App`]) changed only by `update(Action)`; keys, data
//! from the peer and results of commands all arrive as actions; views only draw.

pub mod app;
pub mod keys;
pub mod log_pane;
pub mod model;
pub mod poller;
pub mod ui;
pub mod views;

#[cfg(test)]
mod log_tests;
#[cfg(test)]
mod tests;

use std::{
    io::IsTerminal,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::bail;
use crossterm::{
    event::{Event, EventStream, KeyEventKind},
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use futures::StreamExt;
use ratatui::{Terminal, backend::CrosstermBackend};
use smon_proto::KeyringHandle;
use tokio::sync::mpsc;

use crate::{
    cluster_dir::ClusterDir,
    log_follow::{LogError, LogFollower, LogTarget, Reach},
};
use app::{Action, App, Effect};
use log_pane::{LogEvent, LogMsg};
use model::Model;

pub enum Source {
    Dir(Box<ClusterDir>),
    Peer { addr: String, key: KeyringHandle },
}

/// Refuse to start `what` (the TUI, the demo) when standard output is not a terminal.
pub fn require_terminal(what: &str) -> anyhow::Result<()> {
    if !std::io::stdout().is_terminal() {
        bail!(
            "{what} needs a terminal, and standard output is not one; for scripts use the batch \
             commands (smon-console -C DIR status --json, wait, disable, ...) or \
             `smon-console demo --headless --json`"
        );
    }
    Ok(())
}

/// Restores the terminal however the TUI ends.
struct TerminalGuard;

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = disable_raw_mode();
        let _ = execute!(
            std::io::stdout(),
            LeaveAlternateScreen,
            crossterm::cursor::Show
        );
    }
}

/// Put the terminal in raw mode on the alternate screen, for as long as the guard lives (and
/// restore it on a panic too).
fn enter_terminal() -> anyhow::Result<(TerminalGuard, Terminal<CrosstermBackend<std::io::Stdout>>)>
{
    enable_raw_mode()?;
    let guard = TerminalGuard;
    execute!(
        std::io::stdout(),
        EnterAlternateScreen,
        crossterm::cursor::Hide
    )?;
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = disable_raw_mode();
        let _ = execute!(
            std::io::stdout(),
            LeaveAlternateScreen,
            crossterm::cursor::Show
        );
        default_hook(info);
    }));
    let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    Ok((guard, terminal))
}

pub async fn run(source: Source, readonly: bool) -> anyhow::Result<()> {
    require_terminal("the TUI")?;
    let (candidates, key, model, dir, reach) = match source {
        Source::Dir(dir) => {
            let candidates = dir.peers_to_ask().into_iter().map(|(_, a)| a).collect();
            let model = Model::with_machines(dir.membership.machines());
            let (key, path) = (dir.key.clone(), Some(dir.path.clone()));
            (candidates, key, model, path, Reach::Dir(Arc::from(dir)))
        }
        Source::Peer { addr, key } => {
            let reach = Reach::Peer {
                addr: addr.clone(),
                key: key.clone(),
            };
            (vec![addr], key, Model::default(), None, reach)
        }
    };
    let interval = Duration::from_millis(1_000);
    let (tx, mut rx) = mpsc::channel::<Action>(1024);
    let poller = poller::Poller {
        candidates,
        key,
        every: interval,
        started: Instant::now(),
    };
    let poll_task = tokio::spawn(poller.run(tx.clone()));
    let rekey_task = match &reach {
        Reach::Dir(dir) => Some(tokio::spawn(watch_rekey(dir.clone(), tx.clone()))),
        Reach::Peer { .. } => None,
    };

    let (_guard, mut terminal) = enter_terminal()?;
    let mut app = App::new(model, readonly, dir.is_some());
    app.no_color = ui::no_color_requested();
    if app.no_color {
        ui::leave_no_color_to_the_buffer();
    }
    let mut events = EventStream::new();
    let page = |h: u16| h.saturating_sub(ui::CHROME_ROWS) as usize;
    app.update(Action::PageSize(page(terminal.size()?.height)));
    let mut dirty = true;
    let mut clock = tokio::time::interval(Duration::from_secs(1));
    let mut log_task: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        if dirty {
            terminal.draw(|f| ui::draw(f, &app))?;
            dirty = false;
        }
        let action = tokio::select! {
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind != KeyEventKind::Release => keys::action_for(&app, key),
                Some(Ok(Event::Resize(_, h))) => Some(Action::PageSize(page(h))),
                Some(Ok(_)) => None,
                Some(Err(_)) | None => Some(Action::Quit),
            },
            action = rx.recv() => action,
            // Redraw now and then while stale, so the "since" clock moves.
            _ = clock.tick() => {
                dirty |= matches!(app.model.connection, Some(model::Connection::Stale { .. }));
                None
            }
        };
        let Some(action) = action else { continue };
        dirty = true;
        match app.update(action) {
            Some(Effect::Quit) => break,
            Some(Effect::Run(args)) => {
                let tx = tx.clone();
                let dir = dir.clone();
                tokio::spawn(async move {
                    let result = run_batch(dir, args).await;
                    let _ = tx.send(Action::OpDone(result)).await;
                });
            }
            Some(Effect::FollowLog(target, generation)) => {
                let reader = follow_log(reach.clone(), target, generation, tx.clone());
                if let Some(old) = log_task.replace(tokio::spawn(reader)) {
                    old.abort();
                }
            }
            Some(Effect::StopLog) => {
                if let Some(old) = log_task.take() {
                    old.abort();
                }
            }
            None => {}
        }
    }
    if let Some(task) = log_task {
        task.abort();
    }
    poll_task.abort();
    if let Some(task) = rekey_task {
        task.abort();
    }
    drop(terminal);
    Ok(())
}

/// How often the TUI asks where a key rotation stands (a handshake per machine).
const REKEY_EVERY: Duration = Duration::from_secs(5);

/// Send where the cluster's key rotation stands, every [`REKEY_EVERY`], once the directory's
/// keyring has rotated (nothing is asked before: `rekey_status` is `None`).
async fn watch_rekey(dir: Arc<ClusterDir>, tx: mpsc::Sender<Action>) {
    loop {
        if let Some(status) = crate::rekey_status::rekey_status(&dir).await
            && tx
                .send(Action::Data(model::DataMsg::Rekey(status)))
                .await
                .is_err()
        {
            return;
        }
        tokio::time::sleep(REKEY_EVERY).await;
    }
}

/// Lines the log pane starts with.
const LOG_PANE_TAIL: u32 = 1000;

/// Feed the log pane of `generation`: the log's last lines, then what is appended, until the
/// pane closes (the task is aborted) or the log cannot be read at all.
async fn follow_log(reach: Reach, target: LogTarget, generation: u64, tx: mpsc::Sender<Action>) {
    let mut follower = LogFollower::new(reach, target);
    let mut started = false;
    loop {
        let read = if started {
            follower.next().await
        } else {
            follower.tail(LOG_PANE_TAIL, None).await
        };
        let (event, last) = match read {
            Ok(chunk) => {
                started = true;
                let event = LogEvent::Lines {
                    via: follower.via().unwrap_or_default().to_owned(),
                    text: String::from_utf8_lossy(&chunk.data).into_owned(),
                    restarted: chunk.restarted,
                };
                (event, false)
            }
            Err(e) => {
                let last = matches!(e, LogError::Refused(_));
                let message = e.to_string();
                (LogEvent::Problem { message, last }, last)
            }
        };
        let lost = matches!(event, LogEvent::Problem { .. });
        if tx
            .send(Action::Log(LogMsg { generation, event }))
            .await
            .is_err()
            || last
        {
            return;
        }
        if lost {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Run a batch command (`smon-console -C DIR ARGS`) and return its last line of output.
async fn run_batch(dir: Option<PathBuf>, args: Vec<String>) -> Result<String, String> {
    let dir = dir.ok_or("commands need the cluster directory (-C)")?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = tokio::process::Command::new(exe)
        .arg("-C")
        .arg(dir)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let last = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    if out.status.success() {
        Ok(format!("{}: {}", args.join(" "), last(&out.stdout)))
    } else {
        Err(last(&out.stderr))
    }
}
