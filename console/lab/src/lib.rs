//! The fleet lab: N machines on one host, each a network namespace on one bridge with its own
//! address in 198.18.0.0/15, its own OpenSSH sshd and host key, and its own home (one Unix
//! user per account), so that smon (or Ansible) deploys over real SSH across a real network
//! boundary. Partitions, crashes, reboots, wipes and slow links are actions on it.
//!
//! ```no_run
//! use smon_lab::{Lab, UpOptions};
//! let lab = Lab::up("/tmp/lab1".as_ref(), &UpOptions { machines: 4, users_per_machine: 1 })?;
//! let s = lab.summary(); // machines, machines_file, known_hosts, key, host_address…
//! lab.crash(2)?;         // every process of machine 2 killed at once
//! lab.boot(2)?;          // its sshd back
//! Lab::down(lab.dir())?; // nothing left
//! # Ok::<(), smon_lab::LabError>(())
//! ```
//!
//! Needs root, iproute2 and openssh-server. See `layout` for every name it makes.
//!
//! Beside the lab, [`flood`]: a connection flood against one server over loopback (no root),
//! for the tests and the benchmark of the servers' limits at the door.

mod cgroup;
mod down;
mod error;
pub mod flood;
mod guard;
mod lab;
pub mod layout;
mod net;
mod procs;
mod run;
mod sshd;
mod subnet;
mod up;
mod users;

pub use down::{DownReport, leftovers};
pub use error::LabError;
pub use guard::LabGuard;
pub use lab::{Lab, Summary};
pub use net::parse_rate;
pub use procs::is_alive;
pub use up::UpOptions;

/// Can this host run a lab? None if so, or why not (for tests that skip with a message).
pub fn unavailable() -> Option<String> {
    up::preflight().err().map(|e| e.to_string())
}
