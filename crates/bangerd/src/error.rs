//! Printing an error with its causes, shared by every layer.
//!
//! Error types in bangerd never repeat their source in their own message;
//! the chain is printed once, here, where an error leaves the daemon (a log
//! line, an API response, a VM's `last_error`).

/// `error: cause: cause`, each message once.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
