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
# The Firecracker contract tests read the official API spec from ../shared
# (next to the checkout); a clone elsewhere finds it in the workplace copy.
if [ -z "${BANGER_FC_SPEC:-}" ]; then
  for candidate in "$PWD/../shared/firecracker/firecracker.yaml" /work/shared/firecracker/firecracker.yaml; do
    if [ -f "$candidate" ]; then
      export BANGER_FC_SPEC="$candidate"
      break
    fi
  done
fi
cargo test --workspace --locked
