#!/usr/bin/env bash
# Builds the Debian package with cargo-deb (installed first when missing) and prints its path:
# both binaries, the mount.bwmediafs link, the man pages, completion scripts for bash, zsh and
# fish generated from the built binary, the systemd units and an example
# /etc/bwmediafs/credentials ([package.metadata.deb] in Cargo.toml lists them). Install it with
#
#   sudo apt-get install ./target/debian/bwmediafs_*.deb     (or dpkg -i, which skips fuse3)
set -euo pipefail
cd "$(dirname "$0")/.."

# The newest cargo-deb that builds with the project's Rust (rust-version in Cargo.toml).
CARGO_DEB_VERSION=3.8.0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# dpkg-shlibdeps (dpkg-dev) finds the shared libraries the binaries need (Depends: libc6 ...).
if ! command -v dpkg-shlibdeps >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends dpkg-dev >/dev/null
fi
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

cargo build --release --locked --bins
target="${CARGO_TARGET_DIR:-target}"
completions="$target/release/completions"
mkdir -p "$completions"
"$target/release/bwmediafs" --completions bash >"$completions/bwmediafs.bash"
"$target/release/bwmediafs" --completions zsh >"$completions/_bwmediafs"
"$target/release/bwmediafs" --completions fish >"$completions/bwmediafs.fish"

# Stripped, as Debian ships binaries (the release profile keeps line tables for local builds).
cargo deb --no-build --locked --strip --output "$target/debian/"
