//! The console's known_hosts (`DIR/known_hosts`, `init --known-hosts`), read as `membership
//! set` and `init` read it: the file is written to disk, then the console pins the host keys
//! of a membership made of every machine the file names (plus a few it does not). Pinning
//! never changes the list, and a pinned list survives the trip to the peers.

use std::io::Write;

use smon_console::host_keys::{PinPolicy, pin};
use smon_proto::{MachineId, Membership};

use crate::io::block_on;

/// At most this many machines are taken from the file.
const MAX_MACHINES: usize = 64;

pub fn run(data: &[u8]) {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("writing the temporary file");
    let list = Membership::new(1, machines_named(data));
    let policy = PinPolicy {
        scan: false,
        trust_on_first_use: true,
    };
    let Ok(pinned) = block_on(pin(file.path(), list.clone(), policy, "fuzz")) else {
        return;
    };
    assert_eq!(
        pinned.machines(),
        list.machines(),
        "pinning changed the list"
    );
    let decoded = Membership::decode(&pinned.encode()).expect("a pinned list decodes");
    assert_eq!(decoded, pinned);
}

/// `h1`, `[h2]:2222`, ... of every line's host field, as machines, and three fixed ones.
fn machines_named(data: &[u8]) -> Vec<MachineId> {
    let text = String::from_utf8_lossy(data);
    let named = text
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .flat_map(|hosts| hosts.split(','))
        .filter_map(|pattern| {
            let entry = match pattern.strip_prefix('[').and_then(|p| p.split_once("]:")) {
                Some((host, port)) if !host.contains(':') => format!("{host}:{port}"),
                _ => pattern.to_owned(),
            };
            MachineId::parse_entry(&entry).ok()
        })
        .take(MAX_MACHINES);
    ["h1", "alice@h2:2222", "[::1]:22", "local:m001"]
        .iter()
        .filter_map(|m| MachineId::parse_entry(m).ok())
        .chain(named)
        .collect()
}

/// Plain, bracketed, hashed (as `ssh-keyscan -H` writes them), wildcard, marker, comment and
/// malformed lines; two keys of one kind for one host.
pub fn seeds() -> Vec<Vec<u8>> {
    let key = |seed: u8| {
        let private = smon_proto::ReleasePrivateKey::from(
            ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]),
        );
        private.public_key().to_openssh().expect("openssh")
    };
    let (a, b) = (key(1), key(2));
    let (rsa, _) = crate::keys::agent_key(true);
    let rsa = rsa.to_openssh().expect("openssh");
    // A hashed entry for h1, port 22 (|1|salt|HMAC-SHA1(salt, "h1")), written by russh.
    let hashed = {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("known_hosts");
        let public = ssh_key::PublicKey::from_openssh(&a).expect("a key");
        smon_login::host_keys::record_host_key(&path, "h1", 22, &public).expect("recording");
        std::fs::read_to_string(&path).expect("the recorded entry")
    };
    [
        format!("h1 {a}\n[h2]:2222 {b}\n"),
        format!("# comment\n\nh1,10.0.0.1 {rsa}\nh1 {a}\n"),
        format!("h1 {a}\nh1 {b}\n"),
        format!("*.example.org {a}\n!h3 {b}\n@cert-authority * {a}\n@revoked h1 {b}\n"),
        format!("{hashed}[h2]:2222 {b}\n"),
        "h1 ssh-ed25519 garbage\n".to_string(),
        "h1\n".to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}
