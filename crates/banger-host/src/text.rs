//! Escaping names from outside (file names, guest-provided strings) for
//! one-line display on the user's terminal.
//!
//! A file name may hold a newline (forging a line of a listing), an ANSI/OSC
//! escape (recolouring, retitling or hiding output), or bidi overrides
//! (text that reads differently from what it is). [`escape_for_terminal`]
//! turns each such character into a visible escape, the way
//! [`char::escape_debug`] writes it, so the name stays one line and can be
//! read back unambiguously.

/// Returns `text` with control characters (C0 incl. newline, tab and ESC,
/// DEL, C1), bidi embedding/override/isolate marks, line/paragraph
/// separators and backslashes written as Rust-style escapes (`\n`, `\t`,
/// `\u{1b}`, `\\`); other characters are kept. Text without any of these
/// is returned unchanged.
pub fn escape_for_terminal(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' || is_terminal_unsafe(c) {
            out.extend(c.escape_debug());
            // escape_debug leaves some of these (bidi marks) as they are.
            if c.escape_debug().next().is_none_or(|first| first != '\\') {
                out.pop();
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// True for characters that must never reach a terminal verbatim in a
/// listing: controls (U+0000–U+001F, U+007F, U+0080–U+009F, where U+009B is
/// a one-byte CSI on some terminals), bidi marks ("Trojan Source") and the
/// Unicode line and paragraph separators.
pub fn is_terminal_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            | '\u{2028}' | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newlines_escapes_and_bidi_marks_are_escaped() {
        assert_eq!(escape_for_terminal("plain/ü.txt"), "plain/ü.txt");
        assert_eq!(
            escape_for_terminal("a\nb\u{1b}[31m\t\r\u{7f}\u{9b}"),
            "a\\nb\\u{1b}[31m\\t\\r\\u{7f}\\u{9b}"
        );
        assert_eq!(
            escape_for_terminal("x\u{202e}y\u{2028}"),
            "x\\u{202e}y\\u{2028}"
        );
        // A backslash is escaped too, so a literal "\n" cannot pass for a newline.
        assert_eq!(escape_for_terminal("a\\nb"), "a\\\\nb");
    }
}
