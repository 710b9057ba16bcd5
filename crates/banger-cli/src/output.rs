//! Everything the CLI writes to stdout goes through here: stdout carries
//! data only (tables, JSON, paths); messages and progress go to stderr.
#![allow(clippy::print_stdout)]

use std::io::Write;

/// Writes `text` (plus a newline) to stdout.
pub fn line(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}")?;
    stdout.flush()
}

/// Writes `value` as pretty JSON to stdout.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    line(&text)?;
    Ok(())
}

/// Shows one progress step of a long operation on stderr as `stage: message`.
pub fn progress_line(progress: &banger_api::operation::Progress) {
    eprintln!("{}: {}", progress.stage, sanitize(&progress.message));
}

/// A duration for people: `5s`, `1m 5s`, `1h 1m`, `1d 1h`.
pub fn duration(seconds: u64) -> String {
    let (days, hours, minutes, seconds) = (
        seconds / 86400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// How long ago Unix time `then` was, as [`duration`] with ` ago`.
pub fn age(then: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let then = u64::try_from(then).unwrap_or(0);
    format!("{} ago", duration(now.saturating_sub(then)))
}

/// Writes `value` as one line of compact JSON to stdout (NDJSON streams).
pub fn json_line<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    line(&serde_json::to_string(value)?)?;
    Ok(())
}

/// Joins names (or anything displayable) with `separator`.
pub fn join<T: std::fmt::Display>(items: &[T], separator: &str) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(separator)
}

/// Formats rows as left-aligned columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut text = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column + 1 == row.len() {
                    text.push_str(cell);
                } else {
                    text.push_str(&format!("{cell:<width$}  ", width = widths[column]));
                }
            }
            text.trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replaces control characters so text from outside (a daemon reply, a
/// guest) can never drive the user's terminal.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_are_human() {
        assert_eq!(super::duration(5), "5s");
        assert_eq!(super::duration(65), "1m 5s");
        assert_eq!(super::duration(3700), "1h 1m");
        assert_eq!(super::duration(90000), "1d 1h");
    }

    use super::*;

    #[test]
    fn table_aligns_columns() {
        let rows = vec![
            vec!["KEY".to_owned(), "VALUE".to_owned()],
            vec!["long_key".to_owned(), "v".to_owned()],
        ];
        assert_eq!(table(&rows), "KEY       VALUE\nlong_key  v");
    }

    #[test]
    fn sanitize_removes_escape_sequences() {
        assert_eq!(
            sanitize("ok\u{1b}[31mred\u{7}"),
            "ok\u{fffd}[31mred\u{fffd}"
        );
    }
}
