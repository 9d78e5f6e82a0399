//! The peer's own counters ([`PeerCounters`]), counted here around the core (the core counts
//! nothing: it stays pure, and the simulator does not need them). The actor calls these for
//! every output it carries out and every input and call it hands the core; `cluster_view`
//! answers carry the counters (`smon-console metrics`, the peer's `/metrics`).

use smon_proto::{PeerCounters, PeerReply, wire_size};

use crate::core::{Input, LoginOutcome, Output};

/// Count an output of the core as the actor carries it out: a call sent, a login or a
/// deployment started.
pub fn on_output(c: &mut PeerCounters, output: &Output) {
    match output {
        Output::Call { call, .. } => c.gossip_sent_bytes += wire_size(call),
        Output::Login(_) => c.login_attempts += 1,
        Output::Deploy { .. } => c.deploy_attempts += 1,
        _ => {}
    }
}

/// Count an input before the core gets it: a reply received, a login or deployment failed.
pub fn on_input(c: &mut PeerCounters, input: &Input) {
    match input {
        Input::Reply {
            result: Ok(reply), ..
        } => c.gossip_received_bytes += wire_size(reply),
        Input::LoginDone {
            outcome: LoginOutcome::Failed(_),
            ..
        } => c.login_failures += 1,
        Input::DeployDone { ok: false, .. } => c.deploy_failures += 1,
        _ => {}
    }
}

/// Count a call another peer made (`call_bytes`: its [`wire_size`]) and the answer it got.
/// Package chunks are not gossip: `retrieve_peer` data is read from disk outside the actor.
pub fn on_call(c: &mut PeerCounters, call_bytes: u64, answer: &PeerReply) {
    c.gossip_received_bytes += call_bytes;
    c.gossip_sent_bytes += wire_size(answer);
}

#[cfg(test)]
mod tests {
    use smon_proto::{MachineId, PeerCall};

    use super::*;
    use crate::core::CallFailure;

    #[test]
    fn attempts_failures_and_bytes_are_counted() {
        let mut c = PeerCounters::default();
        let m = MachineId::local("m1");
        on_output(&mut c, &Output::Login(m.clone()));
        on_output(&mut c, &Output::Login(m.clone()));
        on_input(
            &mut c,
            &Input::LoginDone {
                machine: m.clone(),
                outcome: LoginOutcome::Failed(smon_proto::Reason::new("refused")),
            },
        );
        on_output(
            &mut c,
            &Output::Deploy {
                machine: m.clone(),
                hint: None,
                over_other_cluster: false,
                over_stale_key: false,
            },
        );
        on_input(
            &mut c,
            &Input::DeployDone {
                machine: m.clone(),
                ok: true,
            },
        );
        let call = PeerCall::ExchangeLivetag(Default::default());
        on_output(
            &mut c,
            &Output::Call {
                id: 1,
                to: m.clone(),
                call: call.clone(),
            },
        );
        let reply = PeerReply::Livetag(Default::default());
        on_input(
            &mut c,
            &Input::Reply {
                call: 1,
                result: Ok(reply.clone()),
            },
        );
        on_input(
            &mut c,
            &Input::Reply {
                call: 2,
                result: Err(CallFailure::Unreachable),
            },
        );
        on_call(&mut c, wire_size(&call), &reply);
        assert_eq!((c.login_attempts, c.login_failures), (2, 1));
        assert_eq!((c.deploy_attempts, c.deploy_failures), (1, 0));
        assert_eq!(c.gossip_sent_bytes, wire_size(&call) + wire_size(&reply));
        assert_eq!(
            c.gossip_received_bytes,
            wire_size(&reply) + wire_size(&call)
        );
        assert!(c.gossip_sent_bytes > 0);
    }
}
