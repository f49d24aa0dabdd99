#!/usr/bin/env bash
# Runs the comparisons docs/benchmarks.md shows with `plugdb bench`, writing each
# one's table (.txt), figures (.json) and report (.html) to docs/bench/, and a
# screenshot of the engine and partitioner reports (docs/bench/*.png, with
# Debian's chromium). Takes about 15 minutes on 2 cores. Usage: scripts/compare.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/bench}
mkdir -p "$out"
go build -o bin/plugdb ./cmd/plugdb
c=configs/compare

run() { # name, then plugdb bench flags
  local name=$1; shift
  echo "== $name: plugdb bench $*" >&2
  bin/plugdb bench "$@" --json "$out/$name.json" --report "$out/$name.html" | tee "$out/$name.txt"
}

# Durable engines: load 100,000 keys, then point reads (YCSB C) from 16 clients.
run engines --config $c/engine-rowfile-hash.yaml --config $c/engine-rowfile-btree.yaml \
  --config $c/engine-bbolt.yaml --config $c/engine-pebble.yaml --config $c/engine-memory.yaml \
  --workload C --keys 100000 --load-batch 100 --clients 16 --warmup 3s --duration 10s
# Durable writes from 64 clients: inserts of new keys, a Put each; three rounds,
# interleaved, since one round's ranking is within the machine's noise.
three() { for _ in 1 2 3; do for f in "$@"; do printf -- '--config %s ' "$f"; done; done; }
# shellcheck disable=SC2046
run durable-writes $(three $c/engine-rowfile-hash.yaml $c/engine-bbolt.yaml $c/engine-pebble.yaml) \
  --workload load --keys 10000 --clients 64 --warmup 3s --duration 8s
# Point reads, three rounds interleaved.
# shellcheck disable=SC2046
run point-reads $(three $c/engine-rowfile-hash.yaml $c/engine-bbolt.yaml $c/engine-pebble.yaml) \
  --workload C --keys 100000 --load-batch 100 --clients 16 --warmup 3s --duration 8s
# Unsynced loads: 600,000 keys of 1,000-byte values (about 600 MB) in batches of
# 100 (LOAD OPS/S), each engine without fsync; then reads while it settles.
run unsynced-loads --config $c/engine-rowfile-unsynced.yaml --config $c/engine-bbolt-unsynced.yaml --config $c/engine-pebble-unsynced.yaml \
  --workload C --keys 600000 --value-size 1000 --load-batch 100 --clients 16 --warmup 3s --ops 5000
# Partitioners: YCSB E (short scans) on hash, ring and range.
run partitioners --config $c/partitioner-hash.yaml --config $c/partitioner-ring.yaml --config $c/partitioner-range.yaml \
  --workload E --keys 100000 --load-batch 100 --clients 16 --warmup 3s --duration 10s

if command -v chromium >/dev/null; then
  for name in engines partitioners; do
    profile=$(mktemp -d)
    chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
      --disable-component-update --disable-sync --user-data-dir="$profile" --hide-scrollbars \
      --window-size=1400,1900 --screenshot="$PWD/$out/$name.png" "file://$PWD/$out/$name.html" 2>/dev/null
    rm -rf "$profile"
    echo "screenshot: $out/$name.png" >&2
  done
fi
