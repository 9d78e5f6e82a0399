//! Time to build and render one frame of the Machines view and of the Overview with 10,000
//! machines (TestBackend 120×40), and to take in a full view of them.
//!
//! cargo run --release -p smon-console --example tui_bench

use std::time::Instant;

use ratatui::{Terminal, backend::TestBackend};
use smon_console::tui::{
    app::{Action, App},
    model::{DataMsg, Model},
    ui,
};
use smon_proto::{ClusterView, LiveTag, MachineId, MachineRecord, PeerState, Version};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n = 10_000u32;
    let ids: Vec<_> = (0..n)
        .map(|i| MachineId::local(format!("node{i:05}")))
        .collect();
    let records: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut r = MachineRecord::empty(i as u32);
            r.state = if i % 10 == 0 {
                PeerState::Disabled
            } else {
                PeerState::Running
            };
            r.peer_version = Some(Version::new(0, 1 + (i % 3) as u32, 0));
            r.overhead = 1 + (i % 5 == 0) as u32;
            r.logins = (i % 4) as u32;
            (id.clone(), r)
        })
        .collect();
    let view = ClusterView {
        seq: 1,
        answered_by: ids[0].clone(),
        membership_version: 1,
        machines: n,
        livetag: LiveTag::default(),
        records,
        ..ClusterView::empty(ids[0].clone())
    };
    let mut model = Model::with_machines(&ids);
    let t = Instant::now();
    model.apply(DataMsg::View {
        at: 1.0,
        full: true,
        view: Box::new(view),
    });
    let apply_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut app = App::new(model, false, true);
    let t = Instant::now();
    app.update(Action::SortNext); // re-sorts all rows by state
    let sort_ms = t.elapsed().as_secs_f64() * 1e3;
    app.update(Action::PageSize(32));
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    for (tab, name) in [(0, "Overview"), (1, "Machines")] {
        app.update(Action::GoTab(tab));
        let mut times = Vec::new();
        for i in 0..300 {
            if tab == 1 {
                app.update(if i % 2 == 0 {
                    Action::PageDown
                } else {
                    Action::Down
                });
            }
            let t = Instant::now();
            terminal.draw(|f| ui::draw(f, &app)).unwrap();
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "{name}: one frame with {n} machines: median {:.3} ms, max {:.3} ms",
            median(times.clone()),
            times.iter().cloned().fold(0.0, f64::max)
        );
    }
    println!("taking in a full view of {n} records: {apply_ms:.1} ms; re-sort: {sort_ms:.1} ms");
}
