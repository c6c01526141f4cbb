#!/usr/bin/env bash
# What a fresh Debian or Ubuntu machine lacks to mount bwmediafs and run its tests:
# fuse3 (fusermount3 for unprivileged mounts and unmounts, mount.fuse3 for fstab lines), mount
# and util-linux (mount(8) and findmnt, which the fstab tests run), rsync, attr and python3
# (tools the tests use), pjdfstest (the POSIX suite tests/posix.rs runs on the mount, from
# crates.io, built once into cargo's bin directory), and Bandwidth's Python SDK in a virtual
# environment of its own (its InboundCallback model reads the emulator's callbacks in the tests).
set -euo pipefail
need=()
for pkg in fuse3 mount util-linux rsync attr python3 python3-venv; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
pjdfstest_version=0.2.2
if ! "${CARGO_HOME:-$HOME/.cargo}/bin/pjdfstest" --version 2>/dev/null | grep -q "$pjdfstest_version"; then
  cargo install --quiet --locked pjdfstest --version "$pjdfstest_version"
fi
sdk_version=23.3.1
sdk_venv="${XDG_CACHE_HOME:-$HOME/.cache}/bwmediafs-test/bandwidth-sdk-$sdk_version"
if ! "$sdk_venv/bin/python" -c 'import bandwidth' 2>/dev/null; then
  rm -rf "$sdk_venv"
  python3 -m venv "$sdk_venv"
  "$sdk_venv/bin/pip" install --quiet --disable-pip-version-check "bandwidth-sdk==$sdk_version"
fi
[ -e /dev/fuse ] || { [ "$(id -u)" -eq 0 ] && modprobe fuse; } || {
  echo "install-deps: /dev/fuse is missing; load the fuse kernel module (modprobe fuse)" >&2
  exit 1
}
