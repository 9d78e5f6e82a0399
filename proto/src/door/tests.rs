use std::net::Ipv4Addr;

use super::*;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 66, 0, last))
}

fn small() -> DoorLimits {
    DoorLimits {
        max_connections: 8,
        max_handshakes: 6,
        per_source_connections: 5,
        per_source_handshakes: 3,
        per_source_rate: Rate {
            per_second: 10.0,
            burst: 20.0,
        },
        failed_handshake_cost: 9.0,
    }
}

#[test]
fn one_source_cannot_take_every_handshake_slot() {
    let door = Door::new(small());
    let now = Instant::now();
    let held: Vec<Ticket> = (0..3).map(|_| door.admit_at(ip(1), now).unwrap()).collect();
    assert_eq!(door.admit_at(ip(1), now).err(), Some(Refused::Source));
    // Another source still gets in.
    let other = door.admit_at(ip(2), now).unwrap();
    assert_eq!(door.counts().refused_source, 1);
    assert_eq!(door.counts().open, 4);
    drop(held);
    drop(other);
    assert_eq!(door.counts().open, 0);
}

#[test]
fn established_connections_free_their_handshake_slot_up_to_the_source_cap() {
    let door = Door::new(small());
    let now = Instant::now();
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut t = door.admit_at(ip(1), now).unwrap();
        t.handshake(Handshake::Done);
        held.push(t);
    }
    assert_eq!(door.admit_at(ip(1), now).err(), Some(Refused::Source));
    let mut more: Vec<Ticket> = (2..5).map(|i| door.admit_at(ip(i), now).unwrap()).collect();
    assert_eq!(door.admit_at(ip(9), now).err(), Some(Refused::Full));
    more.pop();
    assert!(door.admit_at(ip(9), now).is_ok());
}

#[test]
fn global_handshakes_in_flight_are_capped() {
    let door = Door::new(small());
    let now = Instant::now();
    let _held: Vec<Ticket> = (1..=6)
        .map(|i| door.admit_at(ip(i), now).unwrap())
        .collect();
    assert_eq!(door.admit_at(ip(7), now).err(), Some(Refused::Handshakes));
    assert_eq!(door.counts().refused_handshakes, 1);
}

#[test]
fn a_source_opening_and_dropping_in_a_loop_is_held_to_its_rate() {
    let door = Door::new(small());
    let t0 = Instant::now();
    let admitted = (0..100)
        .filter(|_| door.admit_at(ip(1), t0).map(drop).is_ok())
        .count();
    assert_eq!(admitted, 20, "the burst");
    assert_eq!(door.counts().refused_rate, 80);
    let later = t0 + Duration::from_secs(1);
    let admitted = (0..100)
        .filter(|_| door.admit_at(ip(1), later).map(drop).is_ok())
        .count();
    assert_eq!(admitted, 10, "one second of the rate");
}

#[test]
fn failed_handshakes_cost_their_source_extra() {
    let door = Door::new(small());
    let t0 = Instant::now();
    // Each wrong-key handshake costs 1 + 9 tokens: two fit in the burst of 20.
    let mut failed = 0;
    for _ in 0..10 {
        if let Ok(mut t) = door.admit_at(ip(1), t0) {
            t.handshake(Handshake::Failed);
            failed += 1;
        }
    }
    assert_eq!(failed, 2);
    assert_eq!(door.counts().handshake_failures, 2);
    assert_eq!(door.counts().refused_rate, 8);
    // A source that behaves is not touched.
    assert!(door.admit_at(ip(2), t0).is_ok());
}

#[test]
fn descriptors_bound_the_caps() {
    let fitted = DoorLimits::default().fit_descriptors(1_024);
    assert_eq!(
        fitted.max_connections,
        1_024 - RESERVED_DESCRIPTORS as usize
    );
    assert!(fitted.max_handshakes <= fitted.max_connections);
    assert!(fitted.per_source_connections <= fitted.max_connections);
    assert_eq!(
        DoorLimits::default().fit_descriptors(100).max_connections,
        16
    );
    assert_eq!(
        DoorLimits::default().fit_descriptors(1 << 20),
        DoorLimits::default()
    );
}

#[test]
fn sources_are_forgotten_once_idle() {
    let door = Door::new(small());
    let mut t = door.admit_at(ip(1), Instant::now()).unwrap();
    t.handshake(Handshake::Done);
    drop(t);
    // The bucket is one token short: still remembered until it refills.
    assert_eq!(door.state.lock().unwrap().sources.len(), 1);
}
