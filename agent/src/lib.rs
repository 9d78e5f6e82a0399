//! `smon-agent`: holds the user's SSH key (or talks to the user's ssh-agent), signs the SSH
//! login challenges that peers forward to it — only genuine user-auth requests for machines of
//! the cluster's membership, within rate limits, every decision audited — and signs releases.

pub mod audit;
pub mod key;
pub mod limits;
pub mod log;
pub mod server;
pub mod userauth;
