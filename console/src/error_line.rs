//! One line for an error and its causes, as the console prints it.

/// `error: cause: cause`, leaving out a cause whose text the line already ends with. Many
/// error types (ours, and io's wrappers) put their source in their own message *and* chain
/// it, so anyhow's `{:#}` would say "Too many open files (os error 24)" twice.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.ends_with(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::from_raw_os_error(libc::EMFILE);
        let e = smon_proto::ProtoError::File {
            path: "c/cluster.json".into(),
            source: io,
        };
        let e = anyhow::Error::new(e).context("reading the cluster directory");
        let line = one_line(&e);
        assert_eq!(
            line,
            "reading the cluster directory: c/cluster.json: Too many open files (os error 24)"
        );
    }

    #[test]
    fn causes_not_in_the_message_are_kept() {
        let e = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&e), "outer: inner");
    }
}
