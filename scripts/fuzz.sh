#!/usr/bin/env bash
# Fuzzes what Telepath decodes from outside: the cargo-fuzz targets in
# fuzz/ (see docs/FUZZING.md).
#
#   scripts/fuzz.sh smoke               every target for FUZZ_SMOKE_SECS (default
#                                       20) from a copy of its seed corpus;
#                                       fails on any crash (scripts/test.sh runs it)
#   scripts/fuzz.sh run TARGET [SECS]   one target for SECS seconds (default 600),
#                                       growing its working corpus in
#                                       fuzz/target/corpus/TARGET (not committed)
#   scripts/fuzz.sh build               builds every target
#   scripts/fuzz.sh list                names the targets
#
# Works with the stable toolchain alone: the targets are built without a
# sanitizer (cargo fuzz -s none: libFuzzer's coverage guidance needs only
# stable rustc flags; panics, the targets' own assertions, timeouts and
# running out of memory are what fail). FUZZ_SANITIZER=address asks for
# AddressSanitizer instead (through RUSTC_BOOTSTRAP=1 on stable, built in
# fuzz/target/address). cargo-fuzz is built from crates.io into
# target/tools/cargo-fuzz the first time; a C++ compiler (for libFuzzer)
# comes from apt when missing. A crash leaves its input in
# fuzz/artifacts/TARGET/ and the command to reproduce it in the output.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
tools=target/tools/cargo-fuzz
export PATH="$PWD/$tools/bin:$PATH"
sanitizer=${FUZZ_SANITIZER:-none}
# A sanitizer's build has a target directory of its own.
target_dir=()
[ "$sanitizer" = none ] || target_dir=(--target-dir "fuzz/target/$sanitizer")

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'fuzz: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

setup() {
  if ! command -v c++ >/dev/null 2>&1; then
    log "installing g++ (libFuzzer is C++)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++
  fi
  if [ "$(cargo-fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into $tools"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$tools" --quiet
  fi
}

# Without a sanitizer cargo-fuzz passes rustc only stable flags. A sanitizer
# is a -Z flag, which a stable rustc takes with RUSTC_BOOTSTRAP=1 (set only
# then: it changes what some build scripts detect, so switching rebuilds).
cargo_fuzz() {
  if [ "$sanitizer" = none ]; then
    cargo fuzz "$@"
  else
    RUSTC_BOOTSTRAP=1 cargo fuzz "$@"
  fi
}

targets() { cargo_fuzz list; }

build() {
  # fuzz/Cargo.lock is committed, but a change to shared's dependencies
  # outdates it: cargo then adds what is new and keeps every other version.
  local before
  before=$(cksum <fuzz/Cargo.lock)
  cargo fetch --quiet --manifest-path fuzz/Cargo.toml --target "$(rustc -vV | sed -n 's/^host: //p')"
  if [ "$(cksum <fuzz/Cargo.lock)" != "$before" ]; then
    printf 'fuzz: fuzz/Cargo.lock was behind the crates it builds and is updated: commit it\n' >&2
  fi
  cargo_fuzz build "${target_dir[@]}" --sanitizer "$sanitizer" "$@"
}

# run_one TARGET SECS CORPUS_DIR [more libFuzzer flags]: fuzzes TARGET for
# SECS seconds, writing what it finds new into CORPUS_DIR; prints one line,
# or the end of libFuzzer's output (the panic, the input) on a failure.
run_one() {
  local target=$1 secs=$2 corpus=$3
  shift 3
  local out
  out=$(mktemp)
  local started=$SECONDS rc=0
  cargo_fuzz run "${target_dir[@]}" --sanitizer "$sanitizer" "$target" "$corpus" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@" \
    >"$out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    tail -n 80 "$out" >&2
    rm -f "$out"
    printf 'fuzz: %s FAILED (exit %s): the input is in fuzz/artifacts/%s/; see docs/FUZZING.md\n' \
      "$target" "$rc" "$target" >&2
    return 1
  fi
  local runs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out" | tail -n 1)
  printf '%-16s ok: %s runs in %ss, corpus %s inputs\n' "$target" "${runs:-?}" \
    "$((SECONDS - started))" "$(find "$corpus" -type f | wc -l)"
  rm -f "$out"
}

cmd=${1:-}
case "$cmd" in
  smoke)
    [ "$#" -eq 1 ] || die "usage: scripts/fuzz.sh smoke"
    setup
    secs=${FUZZ_SMOKE_SECS:-20}
    started=$SECONDS
    log "building the fuzz targets (sanitizer: $sanitizer)"
    build
    log "built in $((SECONDS - started))s; each target for ${secs}s from its seed corpus"
    # The committed corpus is only read: the runs add to a copy.
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    failed=()
    for target in $(targets); do
      [ -d "fuzz/corpus/$target" ] || die "fuzz/corpus/$target: no seed corpus"
      mkdir -p "$work/$target"
      cp fuzz/corpus/"$target"/* "$work/$target/"
      run_one "$target" "$secs" "$work/$target" -runs=5000000 || failed+=("$target")
    done
    log "fuzz smoke took $((SECONDS - started))s"
    [ "${#failed[@]}" -eq 0 ] || die "crashed: ${failed[*]}"
    ;;
  run)
    [ "$#" -ge 2 ] && [ "$#" -le 3 ] || die "usage: scripts/fuzz.sh run TARGET [SECS]"
    target=$2 secs=${3:-600}
    setup
    targets | grep -qx "$target" || die "no target $target (scripts/fuzz.sh list)"
    build "$target"
    corpus=fuzz/target/corpus/$target
    mkdir -p "$corpus"
    for seed in fuzz/corpus/"$target"/*; do
      [ -e "$corpus/${seed##*/}" ] || cp "$seed" "$corpus/"
    done
    log "fuzzing $target for ${secs}s (corpus: $corpus)"
    run_one "$target" "$secs" "$corpus"
    ;;
  build)
    setup
    build
    ;;
  list)
    setup
    targets
    ;;
  *)
    die "usage: scripts/fuzz.sh smoke | run TARGET [SECS] | build | list"
    ;;
esac
