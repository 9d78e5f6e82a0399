//! Everything the TUI knows about the cluster, with the counts the views draw precomputed
//! when data arrives (never while drawing).

use std::collections::{BTreeMap, HashMap, VecDeque};

use smon_proto::{AppState, ClusterView, LiveTag, MachineId, MachineRecord, PeerState};

use crate::bad_versions::{self, BadInView, BadVersionRow};
use crate::view_events::{Change, ViewEvent, livetag_change, machine_changes, membership_change};

/// Recent events kept for the overview.
const MAX_EVENTS: usize = 200;
/// Points of the progress curve kept.
const MAX_HISTORY: usize = 3_600;

#[derive(Clone, Debug)]
pub struct Row {
    pub machine: MachineId,
    pub name: String,
    pub record: Option<MachineRecord>,
    /// When the record's newest version was taken, on the TUI's clock (seconds since it
    /// started), as the answering peer's age of it tells: a record nobody refreshes grows
    /// old (issue 15, kind 1). None without a record or an age.
    pub seen_at: Option<f64>,
}

impl Row {
    pub fn state(&self) -> Option<PeerState> {
        self.record.as_ref().map(|r| r.state)
    }

    pub fn state_word(&self) -> &'static str {
        self.state().map_or("unknown", PeerState::as_str)
    }

    pub fn version(&self) -> String {
        self.record
            .as_ref()
            .and_then(|r| r.peer_version)
            .map_or_else(|| "-".into(), |v| v.to_string())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Connection {
    Connecting,
    Live {
        peer: String,
    },
    /// The last view is kept on screen; `since` is when it stopped updating (seconds).
    Stale {
        since: f64,
        error: String,
    },
}

#[derive(Clone, Debug, Default)]
pub struct AppSummary {
    pub name: String,
    pub by_state: BTreeMap<String, usize>,
}

/// What the poller sends.
#[derive(Clone, Debug)]
pub enum DataMsg {
    View {
        /// Seconds since the TUI started (the clock of the curve and the events).
        at: f64,
        /// A full view (new peer) replaces everything; otherwise only changed records come.
        full: bool,
        view: Box<ClusterView>,
    },
    Disconnected {
        at: f64,
        error: String,
    },
    /// Where a key rotation stands (asked of the peers directly, once the cluster rotated).
    Rekey(crate::rekey_status::RekeyStatus),
}

#[derive(Debug, Default)]
pub struct Model {
    pub rows: Vec<Row>,
    index: HashMap<MachineId, usize>,
    pub total: u32,
    pub membership_version: u64,
    pub livetag: Option<LiveTag>,
    /// The last key rotation's state (none before the first rotation).
    pub rekey: Option<crate::rekey_status::RekeyStatus>,
    pub answered_by: String,
    pub connection: Option<Connection>,
    // Derived when data changes.
    pub deployed: usize,
    pub running: usize,
    pub disabled: usize,
    pub unreachable: usize,
    /// Machines whose peer process is there but does not answer (see
    /// `PeerState::Unresponsive`).
    pub unresponsive: usize,
    /// Machines whose address answers as another machine.
    pub conflicts: usize,
    pub versions: BTreeMap<String, usize>,
    pub livetag_agreeing: usize,
    pub overhead_histogram: BTreeMap<u32, usize>,
    pub logins_histogram: BTreeMap<u32, usize>,
    pub apps: Vec<AppSummary>,
    /// Versions marked bad (rolled back on a machine), from the view's root and records.
    pub bad_versions: Vec<BadVersionRow>,
    pub history: Vec<(f64, f64)>,
    /// The latest events, newest first.
    pub events: VecDeque<ViewEvent>,
    /// Report the state of the first view as events too (`smon-console events`); the TUI
    /// starts quiet and reports changes only.
    pub report_first_view: bool,
    /// A view arrived at least once.
    seen_view: bool,
    /// Bumped on every data change: views cache on it.
    pub generation: u64,
    /// Seconds since the TUI started, as of the latest data.
    pub now: f64,
}

impl Model {
    /// Seed the rows with the machines of the membership list (known before any record).
    pub fn with_machines(machines: &[MachineId]) -> Self {
        let mut model = Model::default();
        for m in machines {
            model.insert_row(m.clone(), None);
        }
        model.total = machines.len() as u32;
        model.recount();
        model
    }

    fn insert_row(&mut self, machine: MachineId, record: Option<MachineRecord>) -> usize {
        let i = self.rows.len();
        self.index.insert(machine.clone(), i);
        self.rows.push(Row {
            name: machine.to_string(),
            machine,
            record,
            seen_at: None,
        });
        i
    }

    /// Apply what the poller sent; the events it caused, oldest first (also kept, newest
    /// first, in [`Model::events`]).
    pub fn apply(&mut self, msg: DataMsg) -> Vec<ViewEvent> {
        let mut events = Vec::new();
        match msg {
            DataMsg::Disconnected { at, error } => {
                self.now = at;
                let since = match &self.connection {
                    Some(Connection::Stale { since, .. }) => *since,
                    _ => {
                        let machine = match &self.connection {
                            Some(Connection::Live { .. }) => self.answered_by.parse().ok(),
                            _ => None,
                        };
                        events.push(ViewEvent {
                            at,
                            source_ms: None,
                            machine,
                            change: Change::Disconnected {
                                error: error.clone(),
                            },
                        });
                        at
                    }
                };
                self.connection = Some(Connection::Stale { since, error });
            }
            DataMsg::View { at, full, view } => self.apply_view(at, full, *view, &mut events),
            DataMsg::Rekey(status) => self.rekey = Some(status),
        }
        for e in &events {
            self.events.push_front(e.clone());
        }
        self.events.truncate(MAX_EVENTS);
        self.generation += 1;
        events
    }

    fn apply_view(
        &mut self,
        at: f64,
        full: bool,
        mut view: ClusterView,
        events: &mut Vec<ViewEvent>,
    ) {
        self.now = at;
        let ages = std::mem::take(&mut view.record_ages_ms);
        let source = view.answered_by.clone();
        let report = self.seen_view || self.report_first_view;
        let mut push = |machine: Option<MachineId>, source_ms: Option<u64>, change: Change| {
            events.push(ViewEvent {
                at,
                source_ms,
                machine,
                change,
            })
        };
        if !matches!(&self.connection, Some(Connection::Live { peer }) if *peer == source.to_string())
        {
            push(Some(source.clone()), Some(view.now_ms), Change::Watching);
        }
        self.connection = Some(Connection::Live {
            peer: source.to_string(),
        });
        self.answered_by = source.to_string();
        self.total = view.machines;
        let old_membership = self.seen_view.then_some(self.membership_version);
        if let Some(change) =
            membership_change(old_membership.unwrap_or(0), view.membership_version)
            && report
        {
            push(Some(source.clone()), Some(view.now_ms), change);
        }
        self.membership_version = view.membership_version;
        if let Some(change) = livetag_change(self.livetag, view.livetag)
            && report
        {
            push(Some(source.clone()), Some(view.now_ms), change);
        }
        self.livetag = Some(view.livetag);
        let bad_in_view = BadInView::of(&view);
        let mut seen = vec![false; self.rows.len()];
        for (k, (machine, record)) in view.records.into_iter().enumerate() {
            let i = match self.index.get(&machine) {
                Some(&i) => i,
                None => {
                    seen.push(false);
                    self.insert_row(machine.clone(), None)
                }
            };
            seen[i] = true;
            if report {
                let source_ms = (record.changed_ms != 0).then_some(record.changed_ms);
                for change in machine_changes(self.rows[i].record.as_ref(), &record) {
                    push(Some(machine.clone()), source_ms, change);
                }
            }
            self.rows[i].record = Some(record);
            self.rows[i].seen_at = ages.get(k).map(|&ms| at - ms as f64 / 1000.0);
        }
        // A full view (a new peer) replaces everything: what it does not hold is unknown.
        if full {
            for (row, seen) in self.rows.iter_mut().zip(seen) {
                if !seen {
                    row.record = None;
                    row.seen_at = None;
                }
            }
        }
        self.seen_view = true;
        let records: Vec<_> = (self.rows.iter())
            .filter_map(|r| Some((r.machine.clone(), r.record.clone()?)))
            .collect();
        self.bad_versions = bad_versions::gather(&bad_in_view, &records);
        self.recount();
        let point = (at, self.deployed as f64);
        if self.history.last().is_none_or(|last| last.1 != point.1) {
            if let Some(&(_, prev)) = self.history.last() {
                // A step, not a ramp: the count held until now.
                self.history.push((at, prev));
            }
            self.history.push(point);
            if self.history.len() > MAX_HISTORY {
                self.history.drain(..self.history.len() - MAX_HISTORY);
            }
        }
    }

    /// Recompute every count the views show.
    pub fn recount(&mut self) {
        self.deployed = 0;
        self.running = 0;
        self.disabled = 0;
        self.unreachable = 0;
        self.unresponsive = 0;
        self.conflicts = 0;
        self.livetag_agreeing = 0;
        self.versions.clear();
        self.overhead_histogram.clear();
        self.logins_histogram.clear();
        let mut apps: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
        for row in &self.rows {
            let Some(r) = &row.record else { continue };
            match r.state {
                PeerState::Running => self.running += 1,
                PeerState::Disabled => self.disabled += 1,
                PeerState::Unreachable => self.unreachable += 1,
                PeerState::Unresponsive => self.unresponsive += 1,
                PeerState::Conflict => self.conflicts += 1,
                _ => {}
            }
            if r.state.is_up() {
                self.deployed += 1;
                if let Some(v) = r.peer_version {
                    *self.versions.entry(v.to_string()).or_default() += 1;
                }
                *self.overhead_histogram.entry(r.overhead).or_default() += 1;
                *self.logins_histogram.entry(r.logins).or_default() += 1;
                if Some(r.livetag) == self.livetag {
                    self.livetag_agreeing += 1;
                }
            }
            for app in &r.apps {
                *apps
                    .entry(app.name.clone())
                    .or_default()
                    .entry(app_state_word(app.state).to_string())
                    .or_default() += 1;
            }
        }
        self.apps = apps
            .into_iter()
            .map(|(name, by_state)| AppSummary { name, by_state })
            .collect();
    }
}

pub fn app_state_word(state: AppState) -> &'static str {
    match state {
        AppState::Installing => "installing",
        AppState::Starting => "starting",
        AppState::Running => "running",
        AppState::Stopped => "stopped",
        AppState::Backoff => "backoff",
        AppState::Failed => "failed",
    }
}
