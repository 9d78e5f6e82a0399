//! The operator's side of smon: the batch commands, the TUI, and the local demo.

pub mod bad_versions;
pub mod cli;
pub mod cluster_dir;
pub mod cmd_agent;
pub mod cmd_app;
pub mod cmd_cluster;
pub mod cmd_demo;
pub mod cmd_docs;
pub mod cmd_events;
pub mod cmd_init;
pub mod cmd_logs;
pub mod cmd_membership;
pub mod cmd_metrics;
pub mod cmd_upgrade;
pub mod cmd_wait;
pub mod connect;
pub mod error_line;
pub mod fan_out;
pub mod host_keys;
pub mod log_follow;
pub mod run;
pub mod signing;
pub mod summary;
pub mod tui;
pub mod view_events;
pub mod zone_records;
