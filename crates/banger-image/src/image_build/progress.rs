//! Maps mmdebstrap's and apt's output (`I:` lines, apt's install plan,
//! "Setting up" lines) to the short `(stage, message)` progress updates that
//! `build_debian_image` reports; the full output goes to the build log.

/// Turns mmdebstrap/apt output lines into `(stage, message)` progress.
#[derive(Debug, Default)]
pub(crate) struct ProgressParser {
    /// 0 before apt's first install plan (essential), 1 for the rest.
    phase: u8,
    total: usize,
    configured: usize,
    /// apt prints its plan twice (download, then install): repeats are dropped.
    last: String,
}

impl ProgressParser {
    pub(crate) fn line(&mut self, line: &str) -> Option<(&'static str, String)> {
        let (stage, msg) = self.parse(line)?;
        if msg == self.last {
            return None;
        }
        self.last.clone_from(&msg);
        Some((stage, msg))
    }

    fn parse(&mut self, line: &str) -> Option<(&'static str, String)> {
        let msg = |s: &str| Some(("installing", s.to_owned()));
        if let Some(info) = line.strip_prefix("I: ") {
            return match info.trim_end_matches("...") {
                "running apt-get update" => {
                    Some(("resolving packages", "updating package lists".into()))
                }
                "downloading packages with apt" => {
                    Some(("downloading", "downloading essential packages".into()))
                }
                "extracting archives" => msg("extracting essential packages"),
                "installing essential packages" => msg("installing essential packages"),
                "installing remaining packages inside the chroot" => {
                    self.phase = 1;
                    Some((
                        "resolving packages",
                        "resolving the remaining packages".into(),
                    ))
                }
                "cleaning package lists and apt cache" => {
                    Some(("finishing", "cleaning apt caches".into()))
                }
                s if s.starts_with("running special hook: sync-out") => {
                    Some(("caching", "saving downloaded packages to the cache".into()))
                }
                s if s.starts_with("running --customize-hook") => Some((
                    "customising",
                    "removing host keys, configuring sshd, masking DHCP clients".into(),
                )),
                _ => None,
            };
        }
        if let Some((n, _)) = line.split_once(" newly installed") {
            let n = n.rsplit(' ').next()?.parse::<usize>().ok()?;
            if self.phase == 1 {
                if self.total == n {
                    return None;
                }
                self.total = n;
                self.configured = 0;
                return Some((
                    "installing",
                    format!("downloading and installing {n} packages"),
                ));
            }
            return Some(("downloading", format!("fetching {n} essential packages")));
        }
        if let Some(rest) = line.strip_prefix("Need to get ") {
            let amounts = rest.split_once(" of archives")?.0;
            let stage = if self.phase == 1 {
                "installing"
            } else {
                "downloading"
            };
            // apt prints "X/Y" when part of the total is already cached.
            return Some(match amounts.split_once('/') {
                Some((get, total)) => {
                    (stage, format!("{get} to download of {total} (rest cached)"))
                }
                None => (stage, format!("{amounts} to download")),
            });
        }
        if self.phase == 1 && self.total > 0 && line.starts_with("Setting up ") {
            self.configured += 1;
            if self.configured % 25 == 0 || self.configured == self.total {
                return Some((
                    "installing",
                    format!("set up {}/{} packages", self.configured, self.total),
                ));
            }
        }
        None
    }
}
