#!/usr/bin/env bash
# Builds the Debian package (scripts/package.sh), installs it with dpkg -i and checks what it
# installed: the binaries, man pages, completions, the mount.bwmediafs link, the credentials
# file, the systemd units; then mounts with the installed binaries, from the command line and
# from an fstab line. Removes the package at the end (--keep keeps it installed). Needs root or
# sudo, and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
[ "${1:-}" = "--keep" ] && keep=1
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

step() { printf '\npackage-check: %s\n' "$*"; }
fail() {
  echo "package-check: FAILED: $*" >&2
  exit 1
}

tmp="$(mktemp -d)"
# Mounts in the background log under the state directory: keep that out of the home directory.
export XDG_STATE_HOME="$tmp/state"
emulator_pid=""
mounts=()
installed=0
cleanup() {
  local m
  for m in "${mounts[@]}"; do
    if mountpoint -q "$m" 2>/dev/null; then
      $sudo umount "$m" 2>/dev/null || $sudo umount -l "$m" 2>/dev/null || true
    fi
  done
  if [ -n "$emulator_pid" ]; then
    kill "$emulator_pid" 2>/dev/null || true
    wait "$emulator_pid" 2>/dev/null || true
  fi
  if [ "$installed" -eq 1 ] && [ "$keep" -eq 0 ]; then
    $sudo dpkg --purge bwmediafs >/dev/null || echo "package-check: could not remove bwmediafs" >&2
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

step "building the package"
deb="$(scripts/package.sh | tail -n 1)"
[ -f "$deb" ] || fail "scripts/package.sh printed no package (got '$deb')"
echo "$deb"

step "installing it with dpkg -i (its dependencies first, with apt)"
need=()
for pkg in fuse3 man-db systemd; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
$sudo dpkg -i "$deb"
installed=1
grep -qw fuse3 <<<"$(dpkg-query -W -f '${Depends}' bwmediafs)" || fail "Depends lacks fuse3"

step "binaries"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
[ "$(/usr/bin/bwmediafs --version)" = "bwmediafs $version" ] || fail "bwmediafs --version"
[ "$(/usr/bin/bwmedia-emulator --version)" = "bwmedia-emulator $version" ] ||
  fail "bwmedia-emulator --version"
[ "$(command -v bwmediafs)" = /usr/bin/bwmediafs ] || echo "note: bwmediafs on PATH is $(command -v bwmediafs)"

step "man pages"
grep -q 'usr/share/man/man1/bwmediafs.1.gz$' <<<"$(dpkg-deb -c "$deb")" || fail "the package has no bwmediafs.1.gz"
if grep -rqs 'path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/; then
  echo "note: dpkg on this machine excludes /usr/share/man; checked the package's contents only"
else
  for page in bwmediafs bwmedia-emulator bwmedia-emulator-inbound; do
    [ "$(man -w "$page")" = "/usr/share/man/man1/$page.1.gz" ] || fail "man -w $page"
    # Rendered without a warning from groff.
    warnings="$(MANWIDTH=80 man --warnings "$page" 2>&1 >/dev/null)"
    [ -z "$warnings" ] || fail "man $page warns: $warnings"
  done
  grep -q 'fuse.bwmediafs' <<<"$(MANWIDTH=80 man bwmediafs)" || fail "man bwmediafs lacks the fstab example"
fi

step "completions"
for f in /usr/share/bash-completion/completions/bwmediafs \
  /usr/share/zsh/vendor-completions/_bwmediafs \
  /usr/share/fish/vendor_completions.d/bwmediafs.fish; do
  grep -q 'cache-size' "$f" || fail "$f is missing or lacks --cache-size"
done
bash --norc -c 'source /usr/share/bash-completion/completions/bwmediafs && complete -p bwmediafs' ||
  fail "bash does not load the completion script"

step "the mount.bwmediafs link (mount(8) looks in /sbin, which is /usr/sbin here)"
[ -L /usr/sbin/mount.bwmediafs ] || fail "/usr/sbin/mount.bwmediafs is not a symlink"
[ "$(readlink -f /usr/sbin/mount.bwmediafs)" = /usr/bin/bwmediafs ] || fail "the link does not resolve to /usr/bin/bwmediafs"
[ -x /sbin/mount.bwmediafs ] || fail "/sbin/mount.bwmediafs is not there (is /sbin not /usr/sbin?)"

step "the credentials file"
[ "$(stat -c '%a %U' /etc/bwmediafs/credentials)" = "600 root" ] || fail "/etc/bwmediafs/credentials is not 600 root"
grep -q '/etc/bwmediafs/credentials' <<<"$(dpkg-query -W -f '${Conffiles}' bwmediafs)" || fail "not a conffile"
for key in BW_ACCOUNT_ID BW_CLIENT_ID BW_CLIENT_SECRET; do
  grep -q "^#$key=" /etc/bwmediafs/credentials || fail "the example lacks #$key="
done
# As shipped (everything commented out) it is refused with a message naming what to set.
mkdir "$tmp/empty"
if out="$(timeout 30 /usr/bin/bwmediafs -f --credentials /etc/bwmediafs/credentials "$tmp/empty" 2>&1)"; then
  fail "the example credentials mounted"
fi
grep -q BW_ACCOUNT_ID <<<"$out" || fail "the example credentials' error does not name BW_ACCOUNT_ID: $out"

step "systemd units"
scripts/check-units.sh --installed

# The emulator, started from the installed binary on a free port; its banner gives the address
# and the variables that mount it, which become a credentials file.
start_emulator() {
  /usr/bin/bwmedia-emulator --listen 127.0.0.1:0 >"$tmp/emulator.out" 2>"$tmp/emulator.log" &
  emulator_pid=$!
  for _ in $(seq 100); do
    [ "$(wc -l <"$tmp/emulator.out")" -ge 2 ] && break
    sleep 0.1
  done
  grep -q '^listening on http://127.0.0.1:' "$tmp/emulator.out" || fail "the emulator did not start: $(cat "$tmp/emulator.log")"
  local vars
  vars="$(sed -n 's/^to mount it: \(.*\) bwmediafs MOUNTPOINT$/\1/p' "$tmp/emulator.out")"
  [ -n "$vars" ] || fail "no mount command in the emulator's banner: $(cat "$tmp/emulator.out")"
  (umask 077 && tr ' ' '\n' <<<"$vars" >"$tmp/credentials")
  grep -q '^BW_BASE_URL=http://127.0.0.1:' "$tmp/credentials" || fail "no base URL in $(cat "$tmp/credentials")"
}

# Write a file through the mount on $1, unmount, mount again with the command $2 (given the
# mountpoint) and read the file back: the bytes went to the server, not only to a cache.
write_and_read_back() {
  local mnt="$1" remount="$2" name="$3"
  mkdir -p "$mnt/package-check"
  echo "written through $name" >"$mnt/package-check/$name.txt"
  $sudo umount "$mnt"
  "$remount" "$mnt" || fail "$name: the second mount failed"
  [ "$(cat "$mnt/package-check/$name.txt")" = "written through $name" ] || fail "$name: the file did not come back"
  $sudo umount "$mnt"
  ! mountpoint -q "$mnt" || fail "$name: still mounted"
}

mount_cli() { timeout 30 /usr/bin/bwmediafs --credentials "$tmp/credentials" "$1"; }

step "mounting with the installed bwmediafs"
start_emulator
mnt="$tmp/mnt-cli"
mkdir -p "$mnt"
mounts+=("$mnt")
mount_cli "$mnt" || fail "bwmediafs did not mount"
write_and_read_back "$mnt" mount_cli command-line

# mount(8) with an fstab line, as users write it: the type fuse.bwmediafs goes through
# mount.fuse3, which runs `bwmediafs SOURCE MOUNTPOINT -o OPTIONS`; the type bwmediafs runs
# /sbin/mount.bwmediafs (the link) with the same arguments.
fstab=""
mount_fstab() { $sudo timeout 30 mount -T "$fstab" "$1"; }
mount_from_fstab() {
  local type mnt
  for type in fuse.bwmediafs bwmediafs; do
    mnt="$tmp/mnt-${type/./-}"
    fstab="$tmp/fstab-$type"
    mkdir -p "$mnt"
    mounts+=("$mnt")
    echo "bwmediafs $mnt $type credentials=$tmp/credentials,allow_other,_netdev,nofail 0 0" >"$fstab"
    cat "$fstab"
    mount_fstab "$mnt" || fail "mount -T with the line above failed"
    write_and_read_back "$mnt" mount_fstab "fstab-$type"
  done
}
step "mounting from an fstab line"
mount_from_fstab

step "all checks passed"
