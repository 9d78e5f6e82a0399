//! `smon-console`: the operator's client (batch commands, the TUI, the demo).

fn main() {
    smon_console::run::main();
}
