#!/bin/sh
# Regenerates images/npm/pi.package-lock.json for the pi version given (the
# lockfile pins every dependency of pi with its version and integrity hash).
# Then copy pi's own version and integrity from the lockfile into
# images/provision.toml. Needs npm and the npm registry; nothing is installed.
set -eu
version=${1:?usage: update-pi-lock.sh PI_VERSION}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
printf '{"name":"banger-pi","private":true,"dependencies":{"@mariozechner/pi-coding-agent":"%s"}}\n' "$version" >"$work/package.json"
(cd "$work" && npm install --package-lock-only --ignore-scripts --no-audit --no-fund >/dev/null)
cp "$work/package-lock.json" "$here/npm/pi.package-lock.json"
node -e 'const l=require(process.argv[1]);const p=l.packages["node_modules/@mariozechner/pi-coding-agent"];console.log(`pi ${p.version} ${p.integrity}`)' "$here/npm/pi.package-lock.json"
