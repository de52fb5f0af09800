#!/usr/bin/env bash
# Checks that vendor/fastwebsockets is the published fastwebsockets release
# plus vendor/fastwebsockets/telepath.patch, and nothing else.
#
#   scripts/check-vendor.sh                 check (exit 1 on any difference)
#   scripts/check-vendor.sh --write-patch   regenerate telepath.patch from
#                                           the vendored tree
#
# The release is the `version` in vendor/fastwebsockets/Cargo.toml. Its
# published source comes from `cargo fetch` in a throwaway project (through
# whatever registry cargo is configured with; the .crate's checksum is checked
# against the lockfile), so nothing else touches the network. The published
# crate's examples, tests, benches, autobahn suite, CI files and dotfiles are
# not vendored and may be absent; every other file must be present and equal.
# VENDOR_DIR points the script at another copy of the vendored tree.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

crate=fastwebsockets
vendor_label=${VENDOR_DIR:-vendor/$crate}
vendor_dir=$(cd "$vendor_label" && pwd)
patch_file=$vendor_dir/telepath.patch

die() { printf 'check-vendor: %s\n' "$*" >&2; exit 1; }

mode=check
case "${1:-}" in
  "") ;;
  --write-patch) mode=write ;;
  *) die "usage: scripts/check-vendor.sh [--write-patch]" ;;
esac
[ "$#" -le 1 ] || die "usage: scripts/check-vendor.sh [--write-patch]"

if [ "$mode" = check ] && ! command -v patch >/dev/null 2>&1; then
  die "'patch' is not installed (Debian package: patch, e.g. apt-get install patch)"
fi
for tool in cargo rustc diff cmp tar sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || die "'$tool' is not installed"
done

version=$(sed -n 's/^version = "\([^"]*\)"$/\1/p' "$vendor_dir/Cargo.toml" | head -n 1)
[ -n "$version" ] || die "no version = \"...\" line in $vendor_label/Cargo.toml"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# --- the published source -------------------------------------------------
mkdir -p "$tmp/fetch/src"
: >"$tmp/fetch/src/lib.rs"
cat >"$tmp/fetch/Cargo.toml" <<EOF
[package]
name = "check-vendor-fetch"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
$crate = { version = "=$version", default-features = false }

[workspace]
EOF
host=$(rustc -vV | sed -n 's/^host: //p')
if ! (cd "$tmp/fetch" && CARGO_TARGET_DIR="$tmp/target" cargo fetch --quiet --target "$host"); then
  die "cargo fetch of $crate $version failed"
fi
checksum=$(awk -v name="$crate" '
  $0 == "name = \"" name "\"" { found = 1 }
  found && /^checksum = / { gsub(/"/, "", $3); print $3; exit }
' "$tmp/fetch/Cargo.lock")

cargo_home=${CARGO_HOME:-$HOME/.cargo}
pristine=$tmp/pristine
for file in "$cargo_home"/registry/cache/*/"$crate-$version.crate"; do
  [ -f "$file" ] && [ -n "$checksum" ] || continue
  [ "$(sha256sum <"$file" | cut -d' ' -f1)" = "$checksum" ] || continue
  mkdir -p "$tmp/unpack"
  tar -xzf "$file" -C "$tmp/unpack"
  mv "$tmp/unpack/$crate-$version" "$pristine"
  break
done
[ -d "$pristine" ] || die "cargo fetched $crate $version but no $crate-$version.crate with checksum ${checksum:-?} is under $cargo_home/registry/cache"

# The vendored files, without this check's own two.
vendored_files() {
  (cd "$vendor_dir" && find . -type f ! -path ./PATCHES.md ! -path ./telepath.patch) |
    sed 's|^\./||' | sort
}

# --- --write-patch ----------------------------------------------------------
if [ "$mode" = write ]; then
  out=$tmp/telepath.patch
  {
    echo "Telepath's changes to $crate $version as published; see PATCHES.md."
    echo "Apply with patch -p1 in the published crate's directory. Written by"
    echo "scripts/check-vendor.sh --write-patch, checked by scripts/check-vendor.sh."
    echo
  } >"$out"
  count=0
  while IFS= read -r f; do
    if [ -f "$pristine/$f" ]; then
      old=$pristine/$f old_label=a/$f
    else
      old=/dev/null old_label=/dev/null
    fi
    rc=0
    diff -u --label "$old_label" --label "b/$f" "$old" "$vendor_dir/$f" >>"$out" || rc=$?
    case $rc in
      0) ;;
      1) count=$((count + 1)) ;;
      *) die "diff failed on $f" ;;
    esac
  done < <(vendored_files)
  mv "$out" "$patch_file"
  echo "$vendor_label/telepath.patch: $count files against $crate $version as published"
  exit 0
fi

# --- check --------------------------------------------------------------
[ -f "$patch_file" ] || die "$vendor_label/telepath.patch is missing"
patched=$tmp/patched
cp -R "$pristine" "$patched"
if ! patch_out=$(cd "$patched" && patch -p1 --forward --fuzz=0 --batch \
  --no-backup-if-mismatch --reject-file=- <"$patch_file" 2>&1); then
  printf '%s\n' "$patch_out" >&2
  die "$vendor_label/telepath.patch does not apply cleanly to $crate $version as published"
fi

problems=()
while IFS= read -r f; do
  if [ ! -f "$patched/$f" ]; then
    problems+=("$f: in $vendor_label but not in $version + telepath.patch")
  elif ! cmp -s "$patched/$f" "$vendor_dir/$f"; then
    problems+=("$f: differs from $version + telepath.patch")
    diff -u --label "$version+telepath.patch/$f" --label "$vendor_label/$f" \
      "$patched/$f" "$vendor_dir/$f" | head -n 40 >&2 || true
  fi
done < <(vendored_files)

while IFS= read -r f; do
  [ -f "$vendor_dir/$f" ] && continue
  case $f in
    # Published but intentionally not vendored.
    .cargo_vcs_info.json | .gitignore | .rustfmt.toml | \
      Cargo.lock | Cargo.toml.orig | rust-toolchain | \
      .cargo/* | .github/* | autobahn/* | benches/* | examples/* | tests/*) ;;
    *) problems+=("$f: in $version + telepath.patch but missing from $vendor_label") ;;
  esac
done < <(cd "$patched" && find . -type f | sed 's|^\./||' | sort)

if [ "${#problems[@]}" -gt 0 ]; then
  printf 'check-vendor: %s\n' "${problems[@]}" >&2
  die "$vendor_label is not pristine $crate $version + telepath.patch; fix it or regenerate the patch (see $vendor_label/PATCHES.md)"
fi
echo "$vendor_label: pristine $version + telepath.patch matches"
