//! Formatting for the screen: sizes, durations, and making text that came
//! from a guest or the daemon safe to put in a cell.

/// Text with control characters and terminal escape sequences removed, so
/// guest-chosen strings (session commands, console output, process names)
/// can never drive the terminal. Tabs become spaces.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => skip_escape(&mut chars),
            '\t' => out.push_str("    "),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips the rest of an escape sequence whose ESC was just read: CSI
/// (`ESC [ ... final`), OSC (`ESC ] ... BEL|ESC \`) or a two-character one.
fn skip_escape(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    match chars.next() {
        Some('[') => {
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        }
        Some(']') => {
            while let Some(c) = chars.next() {
                if c == '\u{7}' {
                    break;
                }
                if c == '\u{1b}' {
                    chars.next_if_eq(&'\\');
                    break;
                }
            }
        }
        _ => {}
    }
}

/// Bytes as a short binary size: `512B`, `1.5K`, `300M`, `7.8G`.
pub fn bytes(value: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if value < 1024 {
        return format!("{value}B");
    }
    let mut scaled = value as f64 / 1024.0;
    let mut unit = 0;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if scaled < 10.0 {
        format!("{scaled:.1}{}", UNITS[unit])
    } else {
        format!("{scaled:.0}{}", UNITS[unit])
    }
}

/// MiB as a short size (`512M`, `2.0G`).
pub fn mib(value: u32) -> String {
    bytes(u64::from(value) << 20)
}

/// Seconds as a short duration: `45s`, `12m`, `3h04m`, `2d05h`.
pub fn uptime(secs: u64) -> String {
    let (days, hours, minutes) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60);
    if days > 0 {
        format!("{days}d{hours:02}h")
    } else if secs >= 3_600 {
        format!("{hours}h{minutes:02}m")
    } else if secs >= 60 {
        format!("{minutes}m")
    } else {
        format!("{secs}s")
    }
}

/// An error and its causes on one line, each cause once (the daemon's
/// messages already carry their own causes).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    sanitize(&text)
}

/// A size typed into the create form: a number with an optional unit
/// (`K`, `M`, `G`, `T`, binary; `B` or none for bytes), or `None` when it
/// is not one.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return None,
    };
    number.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_drops_escapes_and_controls() {
        assert_eq!(sanitize("a\u{1b}[31mred\u{1b}[0m b"), "ared b");
        assert_eq!(sanitize("t\u{1b}]0;title\u{7}x"), "tx");
        assert_eq!(sanitize("t\u{1b}]0;title\u{1b}\\x"), "tx");
        assert_eq!(sanitize("a\rb\u{8}c\td"), "abc    d");
        assert_eq!(sanitize("ünïcode ✓"), "ünïcode ✓");
        assert_eq!(sanitize("\u{1b}"), "");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(bytes(0), "0B");
        assert_eq!(bytes(1536), "1.5K");
        assert_eq!(bytes(300 << 20), "300M");
        assert_eq!(bytes(8 << 30), "8.0G");
        assert_eq!(bytes(u64::MAX), "16384P");
        assert_eq!(mib(2048), "2.0G");
        assert_eq!(uptime(45), "45s");
        assert_eq!(uptime(720), "12m");
        assert_eq!(uptime(3 * 3600 + 240), "3h04m");
        assert_eq!(uptime(2 * 86_400 + 5 * 3600), "2d05h");
    }

    #[test]
    fn form_sizes() {
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size(" 512 MiB "), Some(512 << 20));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("4X"), None);
        assert_eq!(parse_size("99999999999T"), None);
    }
}
