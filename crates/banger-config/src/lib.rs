//! Where banger keeps things and how it is configured.
//!
//! [`paths`] resolves the XDG directories (with `BANGER_*` overrides) and the
//! files inside them; [`config`] loads `config.toml`, applies environment
//! overrides and validates every value, remembering where each one came from.
//! The CLI and the daemon both use this crate so they always agree on paths.

pub mod config;
pub mod install;
pub mod paths;

pub use config::{
    Config, ConfigError, IdleAction, Ipv4Cidr, LoadedConfig, LogLevel, Source, VmmChoice,
};
pub use install::{InstallMetadata, InstallMetadataError};
pub use paths::{Paths, PathsError};
