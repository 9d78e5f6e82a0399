//! `smon-login`: acting on a machine from outside it. Logging in (a local machine is a
//! directory on this host; an SSH machine is reached with russh, the login signed by the
//! authentication agent), probing, deploying and restarting a peer there, and the layout of a
//! machine's smon directory that those steps and the peer on the machine share.
//!
//! A [`Login`] is a value: the cluster's settings, who asks the agent, where unpinned host
//! keys are recorded, and the host keys the newest signed membership pins. The daemon's actor
//! owns one and hands a copy to each task; the console builds its own.

mod error;

pub mod detach;
pub mod host_keys;
pub mod installed_cluster;
pub mod layout;
mod login;
pub mod machine_ops;
pub mod remote;
pub mod shell;
pub mod ssh;

pub use error::{Error, SignError};
pub use login::{Login, SshContext};
pub use remote::Session;
