//! Making guest-supplied text safe to print on the user's terminal.
//!
//! Everything the guest sends (process names, command lines, error messages)
//! may be hostile: an ANSI/OSC escape can retitle the terminal, hide output,
//! or on some terminals inject input; bidi overrides can make text read
//! differently from what it is. [`sanitize_guest_text`] replaces every such
//! character and caps the length.

/// Default cap, in characters, for guest text shown to the user.
pub const GUEST_TEXT_MAX_CHARS: usize = 512;

/// What replaces a removed character: visible, so tampering is noticeable.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Returns `text` with control characters (C0 incl. ESC and BEL, DEL, C1),
/// bidi embedding/override/isolate marks and line/paragraph separators
/// replaced by [`REPLACEMENT`] (tabs and newlines by a space), truncated to
/// `max_chars` characters with a trailing `…` when cut.
pub fn sanitize_guest_text(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    for (count, c) in text.chars().enumerate() {
        if count == max_chars {
            out.push('…');
            break;
        }
        out.push(match c {
            '\t' | '\n' | '\r' => ' ',
            c if is_unsafe(c) => REPLACEMENT,
            c => c,
        });
    }
    out
}

/// True for characters that must never reach a terminal verbatim.
fn is_unsafe(c: char) -> bool {
    // `is_control` covers U+0000–U+001F, U+007F and the C1 range U+0080–U+009F
    // (U+009B is a one-byte CSI on some terminals).
    c.is_control()
        || matches!(
            c,
            // Arabic letter mark, LRM/RLM, LRE..RLO, LRI..PDI: bidi tricks
            // ("Trojan Source").
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            // Line and paragraph separators break table layout.
            | '\u{2028}' | '\u{2029}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_controls_are_replaced() {
        let hostile = "\u{1b}]0;pwned\u{7}sshd\u{1b}[2J\u{9b}31m\u{7f}\0";
        let clean = sanitize_guest_text(hostile, 100);
        assert!(!clean.chars().any(|c| c.is_control()), "{clean:?}");
        assert_eq!(
            clean,
            "\u{FFFD}]0;pwned\u{FFFD}sshd\u{FFFD}[2J\u{FFFD}31m\u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn bidi_overrides_are_replaced() {
        let clean = sanitize_guest_text("ls \u{202E}fdp.exe\u{2066}x\u{2069}", 100);
        assert_eq!(clean, "ls \u{FFFD}fdp.exe\u{FFFD}x\u{FFFD}");
    }

    #[test]
    fn whitespace_is_flattened_and_unicode_kept() {
        assert_eq!(sanitize_guest_text("a\tb\nc\r", 100), "a b c ");
        assert_eq!(sanitize_guest_text("café 日本 🦀", 100), "café 日本 🦀");
    }

    #[test]
    fn length_is_capped() {
        assert_eq!(sanitize_guest_text("abcdef", 3), "abc…");
        assert_eq!(sanitize_guest_text("abc", 3), "abc");
        assert_eq!(
            sanitize_guest_text(&"é".repeat(10_000), 5).chars().count(),
            6
        );
    }
}
