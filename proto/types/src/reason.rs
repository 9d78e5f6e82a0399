//! Why a machine or an application is in its state, in a few words: carried in gossiped
//! records (issue 15, kinds 2, 7 and 1: an application that cannot be tracked, a machine that
//! cannot be managed, a peer that does not answer), so it is bounded and checked on decode.

use serde::{Deserialize, Serialize};

/// The longest reason, in bytes of UTF-8. Longer texts are cut by [`Reason::new`] and refused
/// on decode.
pub const MAX_REASON_BYTES: usize = 160;

/// A short reason: one line of at most [`MAX_REASON_BYTES`] bytes, no control characters.
/// Decoding refuses anything else (it comes off the network), so a view never shows a
/// forged multi-line or oversized text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Reason(String);

impl Reason {
    /// `text` made a reason: control characters (newlines too) become spaces, runs of
    /// spaces one, and it is cut at a character boundary to fit, ending with `…` if cut.
    pub fn new(text: &str) -> Self {
        let mut clean = String::with_capacity(text.len().min(MAX_REASON_BYTES));
        for c in text.trim().chars() {
            let c = if c.is_control() { ' ' } else { c };
            if c == ' ' && clean.ends_with(' ') {
                continue;
            }
            if clean.len() + c.len_utf8() > MAX_REASON_BYTES - '…'.len_utf8() {
                clean.push('…');
                break;
            }
            clean.push(c);
        }
        Reason(clean)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Reason {
    type Error = String;

    /// Errors when `text` is longer than [`MAX_REASON_BYTES`] or holds a control character.
    fn try_from(text: String) -> Result<Self, String> {
        if text.len() > MAX_REASON_BYTES {
            return Err(format!(
                "reason of {} bytes, more than {MAX_REASON_BYTES}",
                text.len()
            ));
        }
        if text.chars().any(char::is_control) {
            return Err("reason with a control character".into());
        }
        Ok(Reason(text))
    }
}

impl From<Reason> for String {
    fn from(reason: Reason) -> String {
        reason.0
    }
}

#[cfg(test)]
mod tests {
    use bincode::Options;

    use super::*;

    fn wire() -> impl Options {
        bincode::DefaultOptions::new()
    }

    #[test]
    fn a_reason_is_one_bounded_line() {
        let r = Reason::new("login failed:\nUnmatched '''.\r\n");
        assert_eq!(r.as_str(), "login failed: Unmatched '''.");
        let long = Reason::new(&"é".repeat(500));
        assert!(long.as_str().len() <= MAX_REASON_BYTES && long.as_str().ends_with('…'));
        let bytes = wire().serialize(&long).unwrap();
        assert_eq!(wire().deserialize::<Reason>(&bytes).unwrap(), long);
    }

    #[test]
    fn decoding_refuses_oversized_or_multiline_reasons() {
        for bad in ["x".repeat(MAX_REASON_BYTES + 1), "two\nlines".into()] {
            let bytes = wire().serialize(&bad).unwrap();
            let err = wire().deserialize::<Reason>(&bytes).unwrap_err();
            assert!(err.to_string().contains("reason"), "{err}");
        }
    }
}
