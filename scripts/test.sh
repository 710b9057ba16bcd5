#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs its own dependencies, then
# formatting, lints, the static agent build, and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

step() { printf '\n== %s ==\n' "$*" >&2; }

step "dependencies"
./scripts/install-deps.sh

step "Firecracker API spec"
# The Firecracker contract tests validate every request against the official
# API spec, kept outside the checkout. It is found as:
#   1. $BANGER_FC_SPEC, if set;
#   2. shared/firecracker/firecracker.yaml in the checkout or any directory
#      above it, up to /;
#   3. the same upward walk from the checkout's `origin` remote, when that is
#      a local directory. CI tests a fresh clone (`git clone . /tmp/fresh`),
#      and nothing above /tmp holds the spec; the clone's origin is the
#      checkout it was made from, which sits next to shared/.
# banger_testkit::fake_firecracker::default_spec_path looks the same way;
# exporting the result here makes both agree and puts the path in the log.
# Without the spec the tests are SKIPPED, and under CI=true that is an error,
# so it is one here too, before anything is built.
find_fc_spec() {
  local dir
  for dir in "$@"; do
    while :; do
      if [ -f "$dir/shared/firecracker/firecracker.yaml" ]; then
        printf '%s\n' "$dir/shared/firecracker/firecracker.yaml"
        return 0
      fi
      [ "$dir" = / ] && break
      dir="$(dirname "$dir")"
    done
  done
  return 1
}
if [ -z "${BANGER_FC_SPEC:-}" ]; then
  starts=("$(pwd -P)")
  origin="$(git remote get-url origin 2>/dev/null || true)"
  origin="${origin#file://}"
  if [ -n "$origin" ] && [ -d "$origin" ]; then
    starts+=("$(cd "$origin" && pwd -P)")
  fi
  if spec="$(find_fc_spec "${starts[@]}")"; then
    export BANGER_FC_SPEC="$spec"
  fi
fi
if [ -n "${BANGER_FC_SPEC:-}" ] && [ -f "$BANGER_FC_SPEC" ]; then
  echo "Firecracker API spec: $BANGER_FC_SPEC" >&2
else
  if [ -n "${BANGER_FC_SPEC:-}" ]; then
    message="BANGER_FC_SPEC=$BANGER_FC_SPEC is not a file"
  else
    message="no shared/firecracker/firecracker.yaml in or above ${starts[*]}; set BANGER_FC_SPEC to the path of firecracker.yaml"
  fi
  ci="${CI:-}"
  case "${ci,,}" in
    true | 1)
      echo "error: Firecracker API spec not found: $message" >&2
      exit 1
      ;;
    *) echo "warning: Firecracker API spec not found: $message; the Firecracker contract tests will be SKIPPED" >&2 ;;
  esac
fi

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
