//! The machines file (`init --machines`, `membership set`), as the console reads it: UTF-8
//! text, one `[user@]host[:port]` or `local:NAME` per line. An error is one line naming the
//! file and the line; a list that parses becomes the blob every peer must decode back to the
//! same list, and each machine's name reads back as itself.

use smon_proto::{MachineId, Membership};

pub fn run(data: &[u8]) {
    // The console reads the file with read_to_string: anything else is refused there.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Membership::parse("machines", text, 7) {
        Ok(list) => {
            let blob = list.encode();
            let decoded = Membership::decode(&blob).expect("peers decode what the console encodes");
            assert_eq!(decoded, list, "the list changed on its way to the peers");
            for machine in list.machines() {
                let name = machine.to_string();
                assert_eq!(
                    MachineId::parse_entry(&name).as_ref(),
                    Ok(machine),
                    "{name}"
                );
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains('\n'), "a multi-line error: {message:?}");
            assert!(message.starts_with("machines:"), "{message}");
        }
    }
}

pub fn seeds() -> Vec<Vec<u8>> {
    [
        "local:m001\nlocal:m002\n",
        "# the lab\nh1\nalice@h2:2222   # a comment\n\n[::1]:22\n[fe80::1]\n10.0.0.1:22\n",
        "h1\nh1\n",
        "bob@\n",
        "[::1\n",
        "host:0\n",
        "local:\n",
        "a@b@c\n",
        "h1 h2\n",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}
