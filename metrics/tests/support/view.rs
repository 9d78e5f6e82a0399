//! A cluster view of the size the simulator makes: `machines` records summed into the root
//! aggregate the way peers sum them, with the spread of a cluster in the middle of an
//! upgrade (two peer versions, some machines unreachable or deploying, several applications
//! in every state).

use smon_proto_types::{
    Aggregate, AppState, AppStatus, ClusterView, DesiredState, LiveTag, MachineId, MachineRecord,
    PeerCounters, PeerState, Version,
};

pub fn sim_sized_view(machines: u32, apps: u32) -> ClusterView {
    let mut root = Aggregate {
        machines,
        ..Aggregate::default()
    };
    let livetag = LiveTag {
        enabled: true,
        version: 3,
    };
    for i in 0..machines {
        let mut r = MachineRecord::empty(i);
        r.state = match i % 50 {
            0 => PeerState::Unreachable,
            1 => PeerState::Deploying,
            2 => PeerState::Disabled,
            _ => PeerState::Running,
        };
        r.peer_version = Some(Version::new(0, 1 + u32::from(i % 3 == 0), 0));
        r.livetag = livetag;
        r.overhead = 1 + i % 4;
        r.logins = i % 7;
        r.load = (i % 300) as u16;
        r.apps = (0..apps)
            .map(|a| AppStatus {
                name: format!("app-{a:02}"),
                version: Version::new(1, 0, 0),
                desired: DesiredState::Online,
                state: AppState::ALL[((i + a) % 6) as usize],
                restarts: 0,
                reason: None,
            })
            .collect();
        root.add_record(&r, 1);
    }
    ClusterView {
        machines,
        membership_version: 4,
        livetag,
        root,
        now_ms: 1_000_000,
        as_of_ms: 997_500,
        peer: PeerCounters {
            gossip_sent_bytes: 123_456,
            gossip_received_bytes: 654_321,
            login_attempts: 40,
            login_failures: 3,
            deploy_attempts: 12,
            deploy_failures: 1,
            door: smon_proto_types::DoorCounts {
                admitted: 500,
                refused_source: 7_000,
                refused_rate: 2_000,
                handshake_failures: 30,
                handshake_timeouts: 32,
                open: 4,
                ..Default::default()
            },
        },
        ..ClusterView::empty(MachineId::local("m0007"))
    }
}
