#!/usr/bin/env bash
# Checks the systemd units with `systemd-analyze verify`, which needs no running systemd:
#
#   scripts/check-units.sh [UNIT...]    the units in contrib/systemd (or those given), with
#                                       /usr/bin/bwmediafs replaced by the binary built in
#                                       target/ (verify wants every ExecStart= program to exist)
#   scripts/check-units.sh --installed  the units the package installed, as they are, and that
#                                       their Documentation= man page is found
#
# verify fails only on fatal errors; a setting it ignores (a misspelt key, a bad value) is a
# warning, so any message about our units fails the check too.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

units=()
man=no
if [ "${1:-}" = "--installed" ]; then
  units=(/usr/lib/systemd/system/bwmediafs@.service
         /usr/share/doc/bwmediafs/examples/systemd/mnt-media.mount
         /usr/share/doc/bwmediafs/examples/systemd/mnt-media.automount)
  command -v man >/dev/null && man=yes
else
  bin="${CARGO_TARGET_DIR:-target}/debug/bwmediafs"
  [ -x "$bin" ] || cargo build --locked --bin bwmediafs
  bin="$(realpath "$bin")"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  [ $# -gt 0 ] || set -- contrib/systemd/*
  for unit in "$@"; do
    sed "s|/usr/bin/bwmediafs|$bin|g" "$unit" >"$tmp/$(basename "$unit")"
    units+=("$tmp/$(basename "$unit")")
  done
fi

status=0
for unit in "${units[@]}"; do
  name="$(basename "$unit")"
  bad=0
  out="$(systemd-analyze verify --man="$man" "$unit" 2>&1)" || bad=1
  # Messages about other units (the machine's own) are not ours to fix.
  grep -q -F -e "$name" -e "${name%%@*}@" <<<"$out" && bad=1
  if [ "$bad" -ne 0 ]; then
    printf '%s:\n%s\n' "$unit" "$out" >&2
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "check-units: systemd-analyze verify found problems (above)" >&2
  exit 1
fi
echo "check-units: ${#units[@]} units verified"
