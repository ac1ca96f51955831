#!/usr/bin/env bash
# CPU profiles of every process of the benchmark cluster (examples/bench.yaml)
# under one tako-bench load, and how the CPU time divides between them and,
# in each, between the functions that use it most:
#
#   scripts/profile-cluster.sh [TAKO-BENCH ARGS...]
#   scripts/profile-cluster.sh -url http://127.0.0.1:8090 -op post -c 16 -d 15s -size 100
#
# (the default load: GET through the proxy, 64 clients, 10 s). The profiles
# stay in the directory it names at the end, for go tool pprof. Needs the
# ports of examples/bench.yaml and 8090 free.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- -url http://127.0.0.1:8090 -op get -c 64 -d 10s -size 100
work=$(mktemp -d)
mkdir -p "$work/prof"
CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/...
TAKO_CPUPROFILE_DIR=$work/prof "$work/bin/tako-cluster" examples/bench.yaml -p 8090 -v "$work/var" > "$work/cluster.out" 2>&1 &
cluster_pid=$!
trap 'kill $cluster_pid 2>/dev/null || true' EXIT
for _ in $(seq 150); do grep -q "Ctrl-C stops" "$work/cluster.out" && break; sleep 0.2; done
grep -q "Ctrl-C stops" "$work/cluster.out" || { cat "$work/cluster.out" >&2; exit 1; }
"$work/bin/tako-bench" -url http://127.0.0.1:8090 -op post -c 16 -d 3s -size 100 > /dev/null # some data to read
"$work/bin/tako-bench" "$@"
kill -INT $cluster_pid
wait $cluster_pid || true
for p in "$work"/prof/*.cpu.pprof; do
	echo "== $(basename "$p")"
	go tool pprof -top -nodecount=12 "$work/bin/tako-cluster" "$p" 2>/dev/null | sed -n '4,18p'
done
echo "profiles: $work/prof (go tool pprof -top -cum $work/bin/tako-cluster FILE)"
