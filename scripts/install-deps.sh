#!/usr/bin/env bash
# What a fresh Debian or Ubuntu machine lacks to mount bwmediafs and run its tests:
# fuse3 (fusermount3 for unprivileged mounts and unmounts, mount.fuse3 for fstab lines), mount
# and util-linux (mount(8) and findmnt, which the fstab tests run), rsync, attr and python3
# (tools the tests use), and pjdfstest (the POSIX suite tests/posix.rs runs on the mount, from
# crates.io, built once into cargo's bin directory).
set -euo pipefail
need=()
for pkg in fuse3 mount util-linux rsync attr python3; do
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
[ -e /dev/fuse ] || { [ "$(id -u)" -eq 0 ] && modprobe fuse; } || {
  echo "install-deps: /dev/fuse is missing; load the fuse kernel module (modprobe fuse)" >&2
  exit 1
}
