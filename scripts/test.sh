#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs its own dependencies, then
# formatting, lints, the static agent build, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n== %s ==\n' "$*" >&2; }

step "dependencies"
./scripts/install-deps.sh

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --locked
BANGER_AGENT_BIN="$(./scripts/build-agent.sh debug)"
export BANGER_AGENT_BIN

step "tests"
cargo test --workspace --locked
