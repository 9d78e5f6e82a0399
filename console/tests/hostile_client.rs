//! What the fuzz targets found, against a real peer process (built as shipped: a panic aborts
//! it): a client holding K_E sends what tarpc's own decoding panicked on, and the peer keeps
//! serving.

mod harness;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use harness::Cluster;
use smon_proto::{MachineId, tarpc::trace, transport};

/// tarpc's `ClientMessage::Request` as it travels: the deadline is the time left.
#[derive(serde::Serialize)]
enum RawRequest {
    Request {
        context: (Duration, trace::Context),
        id: u64,
        message: smon_proto::PeerServiceRequest,
    },
}

#[test]
fn a_request_whose_deadline_overflows_the_clock_does_not_stop_a_peer() {
    let c = Cluster::new(1, "1s");
    c.ok(&["deploy"]);
    c.ok(&["wait", "--deployed", "all", "--timeout", "60s"]);
    let pid = c.pid("m001").expect("a running peer");

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = smon_console::cluster_dir::ClusterDir::open(&c.dir).unwrap();
        let (key, addr) = (dir.key.clone(), dir.peer_address(&MachineId::local("m001")));
        type Reply = smon_proto::tarpc::Response<smon_proto::PeerServiceResponse>;
        let mut raw =
            transport::connect::<Reply, RawRequest>(addr.as_str(), &key, Duration::from_secs(5))
                .await
                .unwrap();
        raw.send(RawRequest::Request {
            context: (
                Duration::new(u64::MAX, 999_999_999),
                trace::Context::default(),
            ),
            id: 1,
            message: smon_proto::PeerServiceRequest::ClusterView { since: 0 },
        })
        .await
        .unwrap();
        // It answers that very request (its deadline capped), like any other.
        let reply = tokio::time::timeout(Duration::from_secs(10), raw.next())
            .await
            .expect("an answer in time")
            .expect("the connection stays open")
            .expect("a response");
        assert_eq!(reply.request_id, 1);
        let Ok(smon_proto::PeerServiceResponse::ClusterView(view)) = reply.message else {
            panic!("not a cluster view: {:?}", reply.message);
        };
        assert_eq!(view.answered_by, MachineId::local("m001"));
    });
    assert_eq!(c.pid("m001"), Some(pid), "the peer process changed");
    c.ok(&["shutdown", "--timeout", "60s"]);
}
