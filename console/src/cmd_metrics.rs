//! `metrics [--listen ADDR]`: the cluster's figures and the answering peer's in the
//! OpenMetrics text format (`smon-metrics`, written by prometheus-client). Without
//! `--listen`: one view from any peer, printed once. With it: an exporter serving
//! `http://ADDR/metrics`, which follows the cluster through the TUI's poller
//! (`tui::poller`: it keeps a connection to some peer and fails over to the next when that
//! one stops answering), so that a scrape is answered from the last view at once.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Instant,
};

use smon_metrics::{Exporter, Format, MetricsServer, Scrape, render};
use smon_proto::ClusterView;
use tokio::sync::mpsc;

use crate::{
    cli::{MetricsArgs, MetricsFormat},
    cluster_dir::ClusterDir,
    connect,
    tui::{model::DataMsg, poller::Poller},
};

impl From<MetricsFormat> for Format {
    fn from(f: MetricsFormat) -> Self {
        match f {
            MetricsFormat::Openmetrics => Format::OpenMetrics,
            MetricsFormat::Prometheus => Format::Prometheus,
        }
    }
}

pub async fn run(dir: &ClusterDir, args: MetricsArgs) -> anyhow::Result<()> {
    let Some(listen) = args.listen else {
        let view = connect::view(dir).await?;
        let text = render(&view, None, args.format.into());
        let mut out = std::io::stdout().lock();
        return Ok(out.write_all(text.as_bytes())?);
    };
    let server = MetricsServer::bind(&listen)?;
    // The address actually bound (port 0 picks one), for scripts and tests.
    let bound = server.local_addr();
    let latest = Arc::new(Mutex::new(Latest::default()));
    {
        let latest = latest.clone();
        server.spawn(move |format| latest.lock().expect("not poisoned").scrape(format));
    }
    println!(
        "serving metrics at http://{bound}/metrics (following {} peers; Ctrl-C ends)",
        dir.peers_to_ask().len()
    );
    std::io::stdout().flush()?;
    let poller = Poller {
        candidates: dir.peers_to_ask().into_iter().map(|(_, a)| a).collect(),
        key: dir.key.clone(),
        every: args.every,
        started: Instant::now(),
    };
    let (tx, mut rx) = mpsc::channel::<DataMsg>(16);
    let task = tokio::spawn(poller.run(tx));
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Some(msg) => latest.lock().expect("not poisoned").apply(msg),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    task.abort();
    Ok(())
}

/// The exporter's state: the last view and whether the peer still answers.
#[derive(Default)]
struct Latest {
    view: Option<ClusterView>,
    exporter: Exporter,
    last_error: Option<String>,
}

impl Latest {
    fn apply(&mut self, msg: DataMsg) {
        match msg {
            // Only the counts are rendered: a view that brings only changed records (the
            // same peer, polled again) still carries all of them.
            DataMsg::View { view, .. } => {
                self.view = Some(*view);
                self.exporter.connected = true;
            }
            DataMsg::Disconnected { error, .. } => {
                self.exporter.connected = false;
                self.exporter.disconnects += 1;
                self.last_error = Some(error);
            }
            DataMsg::Rekey(_) => {}
        }
    }

    /// The last view's figures (with `smon_exporter_connected 0` while no peer answers);
    /// 503 until some peer has answered once.
    fn scrape(&self, format: Format) -> Scrape {
        match &self.view {
            Some(view) => Scrape::Text(render(view, Some(self.exporter), format)),
            None => Scrape::Unavailable(format!(
                "no peer has answered yet{}",
                self.last_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (last error: {e})"))
            )),
        }
    }
}
