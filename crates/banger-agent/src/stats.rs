//! Guest statistics: load, memory, filesystem use and uptime, from `/proc`
//! and `statvfs`.

use std::path::Path;

use banger_agent_proto::{FsUsage, GuestStats};

/// Collects [`GuestStats`]; values that cannot be read are reported as 0 or
/// `None` rather than failing the whole request.
pub fn collect(proc_root: &Path) -> GuestStats {
    let read = |name: &str| fs_err::read_to_string(proc_root.join(name)).unwrap_or_default();
    let (mem_total_bytes, mem_available_bytes) = parse_meminfo(&read("meminfo"));
    GuestStats {
        uptime_secs: parse_uptime(&read("uptime")),
        load_avg_x100: parse_loadavg(&read("loadavg")),
        mem_total_bytes,
        mem_available_bytes,
        fs_root: fs_usage(Path::new("/")),
        fs_root_home: fs_usage(Path::new("/root")),
    }
}

/// Whole seconds from `/proc/uptime` (`12345.67 23456.78`).
pub fn parse_uptime(text: &str) -> u64 {
    text.split(['.', ' '])
        .next()
        .and_then(|seconds| seconds.trim().parse().ok())
        .unwrap_or(0)
}

/// The three load averages of `/proc/loadavg` (`0.52 0.10 0.03 1/123 456`),
/// times 100.
pub fn parse_loadavg(text: &str) -> [u32; 3] {
    let mut load = [0; 3];
    for (slot, field) in load.iter_mut().zip(text.split_whitespace()) {
        *slot = hundredths(field).unwrap_or(0);
    }
    load
}

/// Parses a decimal like `12.34` into 1234 without going through floats.
fn hundredths(field: &str) -> Option<u32> {
    let (whole, fraction) = field.split_once('.').unwrap_or((field, "0"));
    let whole: u32 = whole.parse().ok()?;
    let mut digits = fraction.bytes().chain(std::iter::repeat(b'0')).take(2);
    let mut fraction = 0;
    for byte in digits.by_ref() {
        if !byte.is_ascii_digit() {
            return None;
        }
        fraction = fraction * 10 + u32::from(byte - b'0');
    }
    whole.checked_mul(100)?.checked_add(fraction)
}

/// `MemTotal` and `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib.saturating_mul(1024))
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// `statvfs` of `path`.
fn fs_usage(path: &Path) -> Option<FsUsage> {
    let stat = rustix::fs::statvfs(path).ok()?;
    let block = stat.f_frsize;
    Some(FsUsage {
        total_bytes: stat.f_blocks.saturating_mul(block),
        free_bytes: stat.f_bfree.saturating_mul(block),
        available_bytes: stat.f_bavail.saturating_mul(block),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_parsed() {
        assert_eq!(parse_uptime("12345.67 23456.78\n"), 12345);
        assert_eq!(parse_uptime(""), 0);
        assert_eq!(
            parse_loadavg("0.52 1.10 12.03 1/123 456\n"),
            [52, 110, 1203]
        );
        assert_eq!(parse_loadavg("junk"), [0, 0, 0]);
        assert_eq!(hundredths("3.5"), Some(350));
        assert_eq!(hundredths("x.5"), None);
        let meminfo = "MemTotal:        2031912 kB\nMemFree:          1500000 kB\nMemAvailable:    1744396 kB\n";
        assert_eq!(parse_meminfo(meminfo), (2031912 * 1024, 1744396 * 1024));
        assert_eq!(parse_meminfo(""), (0, 0));
    }

    #[test]
    fn collect_on_this_machine() {
        let stats = collect(Path::new("/proc"));
        assert!(stats.mem_total_bytes > 0);
        assert!(stats.mem_available_bytes <= stats.mem_total_bytes);
        let root = stats.fs_root.expect("statvfs /");
        assert!(root.total_bytes >= root.free_bytes);
    }
}
