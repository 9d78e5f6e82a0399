//! The command line describing itself: `completions SHELL` (clap_complete) and `man`
//! (clap_mangen), both generated from the grammar in `cli.rs`, so they never drift from it.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;

/// The program's name in scripts and on the manual page.
const BIN: &str = "smon-console";

/// Write the completion script for `shell` to `out` (clap_complete panics on a failed write,
/// so it writes to memory first).
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> std::io::Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN, &mut script);
    out.write_all(&script)
}

/// The subcommands worth a section (not clap's `help`).
fn documented(command: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    command
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// Write the manual page (roff, section 1) to `out`: the top command, then every
/// subcommand's usage, description and options in a section of its own.
pub fn man(out: &mut dyn Write) -> anyhow::Result<()> {
    let mut command = Cli::command().name(BIN);
    command.build();
    let page = clap_mangen::Man::new(command.clone());
    page.render_title(out)?;
    page.render_name_section(out)?;
    page.render_synopsis_section(out)?;
    page.render_description_section(out)?;
    page.render_options_section(out)?;
    page.render_subcommands_section(out)?;
    for sub in documented(&command) {
        write_subcommand(out, sub)?;
    }
    page.render_version_section(out)?;
    Ok(())
}

/// One subcommand's section: its synopsis, what it does and its options (and its own
/// subcommands', one level down: `app install`, `membership show`, ...).
fn write_subcommand(out: &mut dyn Write, sub: &clap::Command) -> anyhow::Result<()> {
    // `build` gave each subcommand its whole name ("smon-console app install").
    let name = sub.get_bin_name().unwrap_or(sub.get_name());
    let page = clap_mangen::Man::new(sub.clone());
    writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
    let mut body = Vec::new();
    page.render_synopsis_section(&mut body)?;
    if let Some(about) = sub.get_long_about().or(sub.get_about()) {
        writeln!(body, ".PP\n{}", escape(&about.to_string()))?;
    }
    if sub.get_arguments().any(|a| !a.is_hide_set()) {
        page.render_options_section(&mut body)?;
    }
    // Under this subcommand's heading, clap_mangen's own section headings become
    // subsections.
    let body = String::from_utf8_lossy(&body).replace("\n.SH ", "\n.SS ");
    let body = body
        .strip_prefix(".SH ")
        .map_or(body.clone(), |b| format!(".SS {b}"));
    out.write_all(body.as_bytes())?;
    for leaf in documented(sub) {
        write_subcommand(out, leaf)?;
    }
    Ok(())
}

/// A line of text as roff: a leading `.` or `'` would be read as a request.
fn escape(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e");
            match l.chars().next() {
                Some('.' | '\'') => format!("\\&{l}"),
                _ => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
