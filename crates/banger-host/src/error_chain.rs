//! Rendering an error with its causes, once: the one implementation every
//! banger crate uses where an error becomes text (log lines, API messages,
//! doctor details, the KVM verdict, the SSH wait's last failure). Error types
//! never repeat their source in their own message, so this prints each cause
//! exactly once.

use std::error::Error;

/// `error` followed by each of its causes, joined by `": "`.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
