//! systemd-resolved integration (in progress).
