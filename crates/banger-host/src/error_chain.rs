//! Rendering an error with its causes, for the places where banger-host
//! itself turns an error into text shown to users (doctor details, the
//! KVM verdict, the SSH wait's last failure).

use std::error::Error;

/// `error` followed by each of its causes, joined by `": "`.
pub(crate) fn render(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
