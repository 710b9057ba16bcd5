//! `config.toml`: the keys, their defaults, environment overrides and validation.
//!
//! Every key is parsed by one function from either a TOML value or an
//! environment string, and defaults are written as the strings a user would
//! type, so defaults, file values and overrides all go through the same
//! validation. Each effective value remembers its [`Source`] for
//! `banger config show`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_api::ImageName;

use crate::paths::{EnvLookup, Paths};

/// Largest config file banger reads; anything bigger is refused unread.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1024 * 1024;

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The built-in default.
    Default,
    /// The config file.
    File {
        /// The file's path.
        path: PathBuf,
    },
    /// An environment variable.
    Env {
        /// The variable's name.
        var: &'static str,
    },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File { path } => write!(f, "file {}", path.display()),
            Self::Env { var } => write!(f, "env {var}"),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The path (after following symlinks) is not a regular file: a FIFO,
    /// a device, a directory or a socket.
    #[error(
        "config file {path} is a {kind}, not a regular file; make it a regular file (a symlink to one is fine) or remove it"
    )]
    NotRegularFile {
        /// The file.
        path: PathBuf,
        /// What it is, such as "FIFO" or "character device".
        kind: &'static str,
    },
    /// The file is larger than [`MAX_CONFIG_FILE_BYTES`].
    #[error("config file {path} is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size (or a lower bound, when it grew while being read).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's report, with line and column.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The file has a key banger does not know.
    #[error("config file {path}: unknown key `{key}`{suggestion}; valid keys are: {valid}")]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The unknown key.
        key: String,
        /// ` (did you mean `x`?)` or empty.
        suggestion: String,
        /// Comma-separated list of valid keys.
        valid: String,
    },
    /// A value has the wrong type or form.
    #[error("{origin}: key `{key}` is {found}; expected {expected}")]
    BadValue {
        /// `config file <path>` or `environment variable <VAR>`.
        origin: String,
        /// The key.
        key: &'static str,
        /// What was found, shown escaped.
        found: String,
        /// The accepted form.
        expected: String,
    },
}

/// Log verbosity of the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Problems worth a look.
    Warn,
    /// Failures only.
    Error,
}

impl LogLevel {
    /// The lowercase name, as accepted in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

/// Which VMM backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmmChoice {
    /// Firecracker when KVM can run guests and the binary exists, else QEMU.
    Auto,
    /// Always Firecracker.
    Firecracker,
    /// Always QEMU.
    Qemu,
}

impl VmmChoice {
    /// The lowercase name, as accepted in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Firecracker => "firecracker",
            Self::Qemu => "qemu",
        }
    }
}

/// What the daemon does with a VM idle for `auto_stop_stale_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IdleAction {
    /// Park it: memory to a file, the VMM exits (`vm resume` or any use
    /// with `auto_resume` brings it back where it was).
    Pause,
    /// Stop it (what runs in it ends; the disks are kept).
    Stop,
}

impl IdleAction {
    /// The lowercase name, as accepted in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Stop => "stop",
        }
    }
}

/// An IPv4 network in CIDR notation, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Ipv4Cidr {
    /// The network address.
    pub network: Ipv4Addr,
    /// The prefix length (8..=30).
    pub prefix: u8,
}

impl Ipv4Cidr {
    /// Whether `address` is a usable host address inside this network (not
    /// the network or broadcast address).
    pub fn contains_host(&self, address: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        let network = u32::from(self.network);
        let address = u32::from(address);
        address & mask == network && address != network && address != network | !mask
    }
}

/// Why a CIDR string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not an IPv4 network like 172.29.0.0/24 (prefix 8..=30, host bits zero)")]
pub struct CidrParseError {
    /// The refused text.
    pub text: String,
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = CidrParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let refuse = || CidrParseError {
            text: text.to_owned(),
        };
        let (address, prefix) = text.trim().split_once('/').ok_or_else(refuse)?;
        let network: Ipv4Addr = address.parse().map_err(|_| refuse())?;
        let prefix: u8 = prefix.parse().map_err(|_| refuse())?;
        if !(8..=30).contains(&prefix) {
            return Err(refuse());
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        if u32::from(network) & !mask != 0 {
            return Err(refuse());
        }
        Ok(Self { network, prefix })
    }
}

impl<'de> serde::Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Ipv4Cidr {
    /// Whether every address of `inner` lies inside this network.
    pub fn contains_network(&self, inner: &Ipv4Cidr) -> bool {
        if inner.prefix < self.prefix {
            return false;
        }
        let mask = u32::MAX << (32 - u32::from(self.prefix));
        u32::from(inner.network) & mask == u32::from(self.network)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// Daemon log verbosity.
    pub log_level: LogLevel,
    /// Where the web UI listens; `None` (an empty value) disables it.
    pub web_listen_addr: Option<SocketAddr>,
    /// Whether `web_listen_addr` may be a non-loopback address. Unsafe: the
    /// UI controls VMs, and only its secret then guards it on the network.
    pub web_allow_remote: bool,
    /// VMM backend choice.
    pub vmm: VmmChoice,
    /// Firecracker binary (a bare name is looked up on PATH).
    pub firecracker_bin: PathBuf,
    /// QEMU binary (a bare name is looked up on PATH).
    pub qemu_bin: PathBuf,
    /// The user's SSH private key for guests.
    pub ssh_key_path: PathBuf,
    /// Image used when `vm create` has no `--image`.
    pub default_image_name: ImageName,
    /// Stop VMs idle this long; `None` disables auto-stop.
    #[serde(with = "optional_duration")]
    pub auto_stop_stale_after: Option<Duration>,
    /// What happens to a VM idle for `auto_stop_stale_after`.
    pub idle_action: IdleAction,
    /// Resume a paused VM when it is used (`vm ssh`, ports, sessions).
    pub auto_resume: bool,
    /// How often guest stats are sampled.
    #[serde(with = "humantime_duration")]
    pub stats_poll_interval: Duration,
    /// How often VMM metrics are sampled.
    #[serde(with = "humantime_duration")]
    pub metrics_poll_interval: Duration,
    /// Name of the host bridge.
    pub bridge_name: String,
    /// The bridge's address, the guests' gateway.
    pub bridge_ip: Ipv4Addr,
    /// The network guests get addresses from.
    pub cidr: Ipv4Cidr,
    /// How many spare TAP devices to keep ready.
    pub tap_pool_size: u32,
    /// Upstream DNS servers handed to guests.
    pub default_dns: Vec<IpAddr>,
    /// Where the `.vm` DNS server listens on the host.
    pub dns_listen_addr: SocketAddr,
    /// Host ports (on the bridge address) guests may reach besides DNS.
    pub allowed_host_ports: Vec<u16>,
    /// Largest work disk a VM may have, in bytes (`vm create`, `vm set`).
    pub max_disk_size: u64,
    /// Registries (`host` or `host:port`) `image pull` may reach over plain
    /// HTTP; loopback registries always may.
    pub insecure_registries: Vec<String>,
}

mod humantime_duration {
    pub fn serialize<S: serde::Serializer>(
        value: &std::time::Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }
}

mod optional_duration {
    pub fn serialize<S: serde::Serializer>(
        value: &Option<std::time::Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => serializer.collect_str(&humantime::format_duration(*value)),
            None => serializer.serialize_str("off"),
        }
    }
}

/// One configurable key: its name, override variable, accepted form and
/// default (as the text a user would write; `None` = computed from paths).
struct KeySpec {
    name: &'static str,
    env: &'static str,
    expected: &'static str,
    default: Option<&'static str>,
}

const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "log_level",
        env: "BANGER_LOG_LEVEL",
        expected: "one of trace, debug, info, warn, error",
        default: Some("info"),
    },
    KeySpec {
        name: "web_listen_addr",
        env: "BANGER_WEB_LISTEN_ADDR",
        expected: "an IP:port such as \"127.0.0.1:7777\", or \"\" or \"none\" to disable the web UI",
        default: Some("127.0.0.1:7777"),
    },
    KeySpec {
        name: "web_allow_remote",
        env: "BANGER_WEB_ALLOW_REMOTE",
        expected: "true or false",
        default: Some("false"),
    },
    KeySpec {
        name: "vmm",
        env: "BANGER_VMM",
        expected: "one of auto, firecracker, qemu",
        default: Some("auto"),
    },
    KeySpec {
        name: "firecracker_bin",
        env: "BANGER_FIRECRACKER_BIN",
        expected: "a program name on PATH or an absolute path",
        default: Some("firecracker"),
    },
    KeySpec {
        name: "qemu_bin",
        env: "BANGER_QEMU_BIN",
        expected: "a program name on PATH or an absolute path",
        default: Some("qemu-system-x86_64"),
    },
    KeySpec {
        name: "ssh_key_path",
        env: "BANGER_SSH_KEY_PATH",
        expected: "an absolute path or one starting with ~/",
        default: None,
    },
    KeySpec {
        name: "default_image_name",
        env: "BANGER_DEFAULT_IMAGE_NAME",
        expected: "an image name: 1 to 63 of a-z, 0-9 and '-', starting with a letter and not ending with '-'",
        default: Some("debian-bookworm"),
    },
    KeySpec {
        name: "auto_stop_stale_after",
        env: "BANGER_AUTO_STOP_STALE_AFTER",
        expected: "\"off\" or a duration such as \"30m\" or \"2h\"",
        default: Some("off"),
    },
    KeySpec {
        name: "idle_action",
        env: "BANGER_IDLE_ACTION",
        expected: "\"pause\" or \"stop\"",
        default: Some("pause"),
    },
    KeySpec {
        name: "auto_resume",
        env: "BANGER_AUTO_RESUME",
        expected: "true or false",
        default: Some("true"),
    },
    KeySpec {
        name: "stats_poll_interval",
        env: "BANGER_STATS_POLL_INTERVAL",
        expected: "a duration of at least 1s, such as \"10s\"",
        default: Some("10s"),
    },
    KeySpec {
        name: "metrics_poll_interval",
        env: "BANGER_METRICS_POLL_INTERVAL",
        expected: "a duration of at least 1s, such as \"30s\"",
        default: Some("30s"),
    },
    KeySpec {
        name: "bridge_name",
        env: "BANGER_BRIDGE_NAME",
        expected: "a network interface name: 1 to 15 of a-z, A-Z, 0-9, '_', '-'",
        default: Some("banger0"),
    },
    KeySpec {
        name: "bridge_ip",
        env: "BANGER_BRIDGE_IP",
        expected: "an IPv4 address inside cidr, such as \"172.29.0.1\"",
        default: Some("172.29.0.1"),
    },
    KeySpec {
        name: "cidr",
        env: "BANGER_CIDR",
        expected: "an IPv4 network with prefix 8 to 30 and zero host bits, such as \"172.29.0.0/24\"",
        default: Some("172.29.0.0/24"),
    },
    KeySpec {
        name: "tap_pool_size",
        env: "BANGER_TAP_POOL_SIZE",
        expected: "an integer from 0 to 64",
        default: Some("2"),
    },
    KeySpec {
        name: "default_dns",
        env: "BANGER_DEFAULT_DNS",
        expected: "a list of IP addresses, such as [\"1.1.1.1\", \"9.9.9.9\"] (comma-separated in the environment)",
        default: Some("1.1.1.1,9.9.9.9"),
    },
    KeySpec {
        name: "dns_listen_addr",
        env: "BANGER_DNS_LISTEN_ADDR",
        expected: "an IP:port such as \"127.0.0.1:42069\"",
        default: Some("127.0.0.1:42069"),
    },
    KeySpec {
        name: "allowed_host_ports",
        env: "BANGER_ALLOWED_HOST_PORTS",
        expected: "a list of ports from 1 to 65535 guests may reach on the host's bridge address, such as [8080] (comma-separated in the environment)",
        default: Some(""),
    },
    KeySpec {
        name: "max_disk_size",
        env: "BANGER_MAX_DISK_SIZE",
        expected: "a size of at least 1G: a byte count or a number with unit K, M, G or T (powers of 1024), such as \"1T\" or \"500G\"",
        default: Some("1T"),
    },
    KeySpec {
        name: "insecure_registries",
        env: "BANGER_INSECURE_REGISTRIES",
        expected: "a list of registry hosts, each `host` or `host:port` (letters, digits, '.', '-', IPv6 in brackets), such as [\"registry.lan:5000\"] (comma-separated in the environment)",
        default: Some(""),
    },
];

/// The names of all keys, in documentation order.
pub fn key_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|key| key.name)
}

/// A raw value before validation: from the file, or text from the
/// environment or a default.
enum Raw<'a> {
    Toml(&'a toml::Value),
    Text(&'a str),
}

/// A value that did not fit; becomes [`ConfigError::BadValue`] once the key
/// and origin are known.
struct Mismatch {
    found: String,
}

impl Raw<'_> {
    fn describe(&self) -> String {
        match self {
            Self::Text(text) => format!("{text:?}"),
            Self::Toml(toml::Value::String(text)) => format!("{text:?}"),
            Self::Toml(value) => format!("{} {}", value.type_str(), value),
        }
    }

    fn mismatch(&self) -> Mismatch {
        Mismatch {
            found: self.describe(),
        }
    }

    fn text(&self) -> Result<&str, Mismatch> {
        match self {
            Self::Text(text) => Ok(text),
            Self::Toml(toml::Value::String(text)) => Ok(text),
            Self::Toml(_) => Err(self.mismatch()),
        }
    }

    fn boolean(&self) -> Result<bool, Mismatch> {
        match self {
            Self::Toml(toml::Value::Boolean(value)) => Ok(*value),
            Self::Toml(_) => Err(self.mismatch()),
            Self::Text(text) => match text.trim() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(self.mismatch()),
            },
        }
    }

    fn parse<T: std::str::FromStr>(&self) -> Result<T, Mismatch> {
        self.text()?.trim().parse().map_err(|_| self.mismatch())
    }

    fn integer(&self) -> Result<i64, Mismatch> {
        match self {
            Self::Toml(toml::Value::Integer(value)) => Ok(*value),
            Self::Toml(_) => Err(self.mismatch()),
            Self::Text(text) => text.trim().parse().map_err(|_| self.mismatch()),
        }
    }

    fn list(&self) -> Result<Vec<String>, Mismatch> {
        match self {
            // "none" is how `config show` prints an empty list, so it
            // must load back as one.
            Self::Text(text) if text.trim() == "none" => Ok(Vec::new()),
            Self::Text(text) => Ok(text
                .split(',')
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect()),
            Self::Toml(toml::Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| self.mismatch())
                })
                .collect(),
            Self::Toml(_) => Err(self.mismatch()),
        }
    }
}

fn parse_duration(raw: &Raw<'_>) -> Result<Duration, Mismatch> {
    let duration = humantime::parse_duration(raw.text()?.trim()).map_err(|_| raw.mismatch())?;
    if duration < Duration::from_secs(1) {
        return Err(raw.mismatch());
    }
    Ok(duration)
}

fn parse_program(raw: &Raw<'_>) -> Result<PathBuf, Mismatch> {
    let text = raw.text()?.trim();
    let path = PathBuf::from(text);
    let bare_name = !text.is_empty() && !text.contains('/');
    if bare_name || path.is_absolute() {
        Ok(path)
    } else {
        Err(raw.mismatch())
    }
}

fn parse_path(raw: &Raw<'_>, home: Option<&Path>) -> Result<PathBuf, Mismatch> {
    let text = raw.text()?.trim();
    if let Some(rest) = text.strip_prefix("~/") {
        return home
            .map(|home| home.join(rest))
            .ok_or_else(|| raw.mismatch());
    }
    let path = PathBuf::from(text);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(raw.mismatch())
    }
}

/// Smallest accepted `max_disk_size`: the default work disk must fit.
const MIN_MAX_DISK_SIZE: u64 = 1 << 30;

/// Units of sizes, largest first, as written and shown.
const SIZE_UNITS: [(&str, u64); 4] = [
    ("T", 1 << 40),
    ("G", 1 << 30),
    ("M", 1 << 20),
    ("K", 1 << 10),
];

/// A size: a TOML integer (bytes) or text such as `1T`, `500G`, `512MiB`
/// or a plain byte count; at least [`MIN_MAX_DISK_SIZE`].
fn parse_disk_size(raw: &Raw<'_>) -> Result<u64, Mismatch> {
    let bytes = match raw {
        Raw::Toml(toml::Value::Integer(value)) => {
            u64::try_from(*value).map_err(|_| raw.mismatch())?
        }
        _ => {
            let text = raw.text()?.trim();
            let split = text
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(text.len());
            let (digits, unit) = text.split_at(split);
            let number: u64 = digits.parse().map_err(|_| raw.mismatch())?;
            let unit = unit.trim().to_ascii_uppercase();
            let unit = unit
                .strip_suffix("IB")
                .or_else(|| unit.strip_suffix('B'))
                .unwrap_or(&unit);
            let multiplier = if unit.is_empty() {
                1
            } else {
                SIZE_UNITS
                    .iter()
                    .find(|(name, _)| *name == unit)
                    .map(|(_, multiplier)| *multiplier)
                    .ok_or_else(|| raw.mismatch())?
            };
            number
                .checked_mul(multiplier)
                .ok_or_else(|| raw.mismatch())?
        }
    };
    if bytes < MIN_MAX_DISK_SIZE {
        return Err(raw.mismatch());
    }
    Ok(bytes)
}

/// `bytes` in the largest unit that divides it exactly (`1T`, `1536M`), or
/// as a plain byte count.
pub fn format_size(bytes: u64) -> String {
    SIZE_UNITS
        .iter()
        .find(|(_, multiplier)| bytes != 0 && bytes % multiplier == 0)
        .map_or_else(
            || bytes.to_string(),
            |(name, multiplier)| format!("{}{name}", bytes / multiplier),
        )
}

fn is_interface_name(text: &str) -> bool {
    (1..=15).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))
}

/// A registry as `image pull` references name it: `host` or `host:port`,
/// the host a DNS name, an IPv4 address or an IPv6 address in brackets.
fn is_registry_host(text: &str) -> bool {
    let (host, port) = match text.rsplit_once(':') {
        Some((host, port))
            if !host.ends_with(':') && (host.starts_with('[') == host.ends_with(']')) =>
        {
            (host, Some(port))
        }
        _ => (text, None),
    };
    let port_ok = port.is_none_or(|port| port.parse::<u16>().is_ok_and(|port| port != 0));
    let host_ok = match host
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host.len() <= 253
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.len() <= 63
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                })
        }
    };
    port_ok && host_ok
}

fn parse_cidr(raw: &Raw<'_>) -> Result<Ipv4Cidr, Mismatch> {
    raw.text()?.parse().map_err(|_| raw.mismatch())
}

impl Config {
    /// Parses and stores one key's value.
    fn set(&mut self, key: &str, raw: &Raw<'_>, home: Option<&Path>) -> Result<(), Mismatch> {
        match key {
            "log_level" => {
                self.log_level = match raw.text()?.trim() {
                    "trace" => LogLevel::Trace,
                    "debug" => LogLevel::Debug,
                    "info" => LogLevel::Info,
                    "warn" => LogLevel::Warn,
                    "error" => LogLevel::Error,
                    _ => return Err(raw.mismatch()),
                }
            }
            "web_listen_addr" => {
                // "none" is what `config show` prints for a disabled UI, so
                // it must load back.
                let text = raw.text()?.trim();
                self.web_listen_addr = if text.is_empty() || text == "none" {
                    None
                } else {
                    Some(raw.parse()?)
                }
            }
            "web_allow_remote" => self.web_allow_remote = raw.boolean()?,
            "vmm" => {
                self.vmm = match raw.text()?.trim() {
                    "auto" => VmmChoice::Auto,
                    "firecracker" => VmmChoice::Firecracker,
                    "qemu" => VmmChoice::Qemu,
                    _ => return Err(raw.mismatch()),
                }
            }
            "firecracker_bin" => self.firecracker_bin = parse_program(raw)?,
            "qemu_bin" => self.qemu_bin = parse_program(raw)?,
            "ssh_key_path" => self.ssh_key_path = parse_path(raw, home)?,
            // The same rule as every image name (banger_api::ImageName).
            "default_image_name" => {
                self.default_image_name =
                    ImageName::parse(raw.text()?.trim()).map_err(|_| raw.mismatch())?;
            }
            "auto_stop_stale_after" => {
                self.auto_stop_stale_after = if raw.text()?.trim() == "off" {
                    None
                } else {
                    Some(parse_duration(raw)?)
                }
            }
            "idle_action" => {
                self.idle_action = match raw.text()?.trim() {
                    "pause" => IdleAction::Pause,
                    "stop" => IdleAction::Stop,
                    _ => return Err(raw.mismatch()),
                }
            }
            "auto_resume" => self.auto_resume = raw.boolean()?,
            "stats_poll_interval" => self.stats_poll_interval = parse_duration(raw)?,
            "metrics_poll_interval" => self.metrics_poll_interval = parse_duration(raw)?,
            "bridge_name" => {
                let text = raw.text()?.trim();
                if !is_interface_name(text) {
                    return Err(raw.mismatch());
                }
                self.bridge_name = text.to_owned();
            }
            "bridge_ip" => self.bridge_ip = raw.parse()?,
            "cidr" => self.cidr = parse_cidr(raw)?,
            "tap_pool_size" => {
                self.tap_pool_size = u32::try_from(raw.integer()?)
                    .ok()
                    .filter(|size| *size <= 64)
                    .ok_or_else(|| raw.mismatch())?
            }
            "default_dns" => {
                let items = raw.list()?;
                let servers: Result<Vec<IpAddr>, _> =
                    items.iter().map(|item| item.parse()).collect();
                let servers = servers.map_err(|_| raw.mismatch())?;
                if servers.is_empty() {
                    return Err(raw.mismatch());
                }
                self.default_dns = servers;
            }
            "dns_listen_addr" => self.dns_listen_addr = raw.parse()?,
            "allowed_host_ports" => {
                let ports: Result<Vec<u16>, _> =
                    raw.list()?.iter().map(|item| item.parse::<u16>()).collect();
                let mut ports = ports.map_err(|_| raw.mismatch())?;
                if ports.contains(&0) {
                    return Err(raw.mismatch());
                }
                ports.sort_unstable();
                ports.dedup();
                self.allowed_host_ports = ports;
            }
            "max_disk_size" => self.max_disk_size = parse_disk_size(raw)?,
            "insecure_registries" => {
                let mut hosts = raw.list()?;
                if !hosts.iter().all(|host| is_registry_host(host)) {
                    return Err(raw.mismatch());
                }
                hosts.sort();
                hosts.dedup();
                self.insecure_registries = hosts;
            }
            _ => return Err(raw.mismatch()),
        }
        Ok(())
    }

    /// The effective value of `key`, formatted as it would be written in
    /// config.toml (without quotes).
    pub fn value_text(&self, key: &str) -> Option<String> {
        let text = match key {
            "log_level" => self.log_level.as_str().to_owned(),
            "web_listen_addr" => match self.web_listen_addr {
                Some(addr) => addr.to_string(),
                None => "none".to_owned(),
            },
            "web_allow_remote" => self.web_allow_remote.to_string(),
            "vmm" => self.vmm.as_str().to_owned(),
            "firecracker_bin" => self.firecracker_bin.display().to_string(),
            "qemu_bin" => self.qemu_bin.display().to_string(),
            "ssh_key_path" => self.ssh_key_path.display().to_string(),
            "default_image_name" => self.default_image_name.to_string(),
            "auto_stop_stale_after" => match self.auto_stop_stale_after {
                Some(duration) => humantime::format_duration(duration).to_string(),
                None => "off".to_owned(),
            },
            "idle_action" => self.idle_action.as_str().to_owned(),
            "auto_resume" => self.auto_resume.to_string(),
            "stats_poll_interval" => {
                humantime::format_duration(self.stats_poll_interval).to_string()
            }
            "metrics_poll_interval" => {
                humantime::format_duration(self.metrics_poll_interval).to_string()
            }
            "bridge_name" => self.bridge_name.clone(),
            "bridge_ip" => self.bridge_ip.to_string(),
            "cidr" => self.cidr.to_string(),
            "tap_pool_size" => self.tap_pool_size.to_string(),
            "default_dns" => self
                .default_dns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "dns_listen_addr" => self.dns_listen_addr.to_string(),
            "allowed_host_ports" if self.allowed_host_ports.is_empty() => "none".to_owned(),
            "allowed_host_ports" => self
                .allowed_host_ports
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "max_disk_size" => format_size(self.max_disk_size),
            "insecure_registries" if self.insecure_registries.is_empty() => "none".to_owned(),
            "insecure_registries" => self.insecure_registries.join(","),
            _ => return None,
        };
        Some(text)
    }
}

/// The effective config, where each value came from, and which file was read.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The validated configuration.
    pub config: Config,
    /// Source of every key.
    pub sources: BTreeMap<&'static str, Source>,
    /// The config file path (whether or not it exists).
    pub file: PathBuf,
    /// Whether the file existed.
    pub file_exists: bool,
}

/// One row of `banger config show`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConfigEntry {
    /// The key.
    pub key: &'static str,
    /// Its effective value.
    pub value: String,
    /// Where it came from.
    pub source: Source,
}

impl LoadedConfig {
    /// Loads the config for `paths` using the process environment.
    pub fn load(paths: &Paths) -> Result<Self, ConfigError> {
        Self::load_with(paths, &crate::paths::process_env)
    }

    /// Loads defaults, then the file (if it exists), then `BANGER_*` overrides.
    pub fn load_with(paths: &Paths, env: EnvLookup<'_>) -> Result<Self, ConfigError> {
        let text = read_config_file(&paths.config_file())?;
        Self::from_parts(paths, text.as_deref(), env)
    }

    /// Builds the config from the file's text (if any) and the environment.
    pub fn from_parts(
        paths: &Paths,
        file_text: Option<&str>,
        env: EnvLookup<'_>,
    ) -> Result<Self, ConfigError> {
        let file = paths.config_file();
        let home = env("HOME")
            .filter(|home| !home.is_empty())
            .map(PathBuf::from);
        let home = home.as_deref();
        let mut config = Config {
            log_level: LogLevel::Info,
            web_listen_addr: None,
            web_allow_remote: false,
            vmm: VmmChoice::Auto,
            firecracker_bin: PathBuf::new(),
            qemu_bin: PathBuf::new(),
            ssh_key_path: paths.config_dir.join("ssh").join("id_ed25519"),
            // Replaced by the key's default below; parsed, not unwrapped.
            default_image_name: placeholder_image_name()?,
            auto_stop_stale_after: None,
            idle_action: IdleAction::Pause,
            auto_resume: true,
            stats_poll_interval: Duration::ZERO,
            metrics_poll_interval: Duration::ZERO,
            bridge_name: String::new(),
            bridge_ip: Ipv4Addr::UNSPECIFIED,
            cidr: Ipv4Cidr {
                network: Ipv4Addr::UNSPECIFIED,
                prefix: 24,
            },
            tap_pool_size: 0,
            default_dns: Vec::new(),
            dns_listen_addr: SocketAddr::from(([127, 0, 0, 1], 42069)),
            allowed_host_ports: Vec::new(),
            max_disk_size: 0,
            insecure_registries: Vec::new(),
        };
        let mut sources = BTreeMap::new();
        for key in KEYS {
            if let Some(default) = key.default {
                let applied = config.set(key.name, &Raw::Text(default), home);
                debug_assert!(applied.is_ok(), "default of {} must be valid", key.name);
            }
            sources.insert(key.name, Source::Default);
        }

        if let Some(text) = file_text {
            let table: toml::Table = text.parse().map_err(|source| ConfigError::Syntax {
                path: file.clone(),
                source: Box::new(source),
            })?;
            for (name, value) in &table {
                let Some(key) = KEYS.iter().find(|key| key.name == name) else {
                    return Err(unknown_key(&file, name));
                };
                config
                    .set(key.name, &Raw::Toml(value), home)
                    .map_err(|mismatch| ConfigError::BadValue {
                        origin: format!("config file {}", file.display()),
                        key: key.name,
                        found: mismatch.found,
                        expected: key.expected.to_owned(),
                    })?;
                sources.insert(key.name, Source::File { path: file.clone() });
            }
        }

        for key in KEYS {
            let Some(value) = env(key.env) else { continue };
            config
                .set(key.name, &Raw::Text(&value), home)
                .map_err(|mismatch| ConfigError::BadValue {
                    origin: format!("environment variable {}", key.env),
                    key: key.name,
                    found: mismatch.found,
                    expected: key.expected.to_owned(),
                })?;
            sources.insert(key.name, Source::Env { var: key.env });
        }

        if !config.cidr.contains_host(config.bridge_ip) {
            let origin = match &sources["bridge_ip"] {
                Source::Default => "default".to_owned(),
                Source::File { path } => format!("config file {}", path.display()),
                Source::Env { var } => format!("environment variable {var}"),
            };
            return Err(ConfigError::BadValue {
                origin,
                key: "bridge_ip",
                found: format!("{:?}", config.bridge_ip.to_string()),
                expected: format!(
                    "a host address inside cidr {} (not its network or broadcast address)",
                    config.cidr
                ),
            });
        }

        Ok(Self {
            config,
            sources,
            file_exists: file_text.is_some(),
            file,
        })
    }

    /// Every key with its effective value and source, in documentation order.
    pub fn entries(&self) -> Vec<ConfigEntry> {
        KEYS.iter()
            .map(|key| ConfigEntry {
                key: key.name,
                value: self.config.value_text(key.name).unwrap_or_default(),
                source: self
                    .sources
                    .get(key.name)
                    .cloned()
                    .unwrap_or(Source::Default),
            })
            .collect()
    }
}

/// The initial `default_image_name` before defaults are applied.
fn placeholder_image_name() -> Result<ImageName, ConfigError> {
    let text = "debian-bookworm";
    ImageName::parse(text).map_err(|_| ConfigError::BadValue {
        origin: "default".to_owned(),
        key: "default_image_name",
        found: format!("{text:?}"),
        expected: "a valid built-in default".to_owned(),
    })
}

/// Reads the config file, or `None` when it does not exist.
///
/// Symlinks are followed (a link into a dotfiles repository is normal), but
/// the target must be a regular file no larger than
/// [`MAX_CONFIG_FILE_BYTES`]: the open is `O_NONBLOCK | O_NOCTTY`, so a FIFO
/// cannot block it, the type and size come from `fstat` on that same
/// descriptor, and at most the limit plus one byte is read, so `/dev/zero`
/// or a file growing meanwhile cannot exhaust memory.
pub fn read_config_file(path: &Path) -> Result<Option<String>, ConfigError> {
    use std::io::Read as _;

    use fs_err::os::unix::fs::OpenOptionsExt as _;

    let read_error = |source| ConfigError::Read {
        path: path.to_owned(),
        source,
    };
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    let flags = i32::try_from(flags.bits())
        .map_err(|_| read_error(std::io::Error::other("open flags do not fit a C int")))?;
    let file = match fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    let metadata = file.metadata().map_err(read_error)?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let kind = crate::paths::file_kind(&file_type);
        return Err(ConfigError::NotRegularFile {
            path: path.to_owned(),
            kind,
        });
    }
    let too_large = |size| ConfigError::TooLarge {
        path: path.to_owned(),
        size,
        limit: MAX_CONFIG_FILE_BYTES,
    };
    if metadata.len() > MAX_CONFIG_FILE_BYTES {
        return Err(too_large(metadata.len()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_CONFIG_FILE_BYTES {
        return Err(too_large(read));
    }
    String::from_utf8(bytes).map(Some).map_err(|error| {
        read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            error.utf8_error(),
        ))
    })
}

fn unknown_key(file: &Path, name: &str) -> ConfigError {
    let closest = KEYS
        .iter()
        .map(|key| (edit_distance(key.name, name), key.name))
        .min()
        .filter(|(distance, _)| *distance <= 3);
    ConfigError::UnknownKey {
        path: file.to_owned(),
        key: name.escape_debug().to_string(),
        suggestion: closest
            .map(|(_, key)| format!(" (did you mean `{key}`?)"))
            .unwrap_or_default(),
        valid: KEYS
            .iter()
            .map(|key| key.name)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Levenshtein distance, for "did you mean" hints on typos.
fn edit_distance(left: &str, right: &str) -> usize {
    let right: Vec<char> = right.chars().collect();
    let mut previous: Vec<usize> = (0..=right.len()).collect();
    for (i, left_char) in left.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, right_char) in right.iter().enumerate() {
            let substitution = previous[j] + usize::from(left_char != *right_char);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[right.len()]
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
