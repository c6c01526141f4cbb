#!/usr/bin/env bash
# The benchmark: bwmediafs beside curl against the same emulator, one table, written to
# BENCHMARKS.md. Usage: scripts/bench.sh [--runs N] [--quick]
# Needs root (to drop the page cache) and /dev/fuse; installs what a fresh machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
cargo build --release --locked --bins
exec python3 scripts/bench.py --bin target/release "$@"
