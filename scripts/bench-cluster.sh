#!/usr/bin/env bash
# Measures the built-in local cluster (tako-cluster, 10 nodes, proxy on
# :8080) with tako-bench, and Redis (no persistence) with redis-benchmark at
# the same concurrency and value sizes, in one run on this machine. The
# figures for docs/performance.md come from here.
#
#   scripts/bench-cluster.sh [SECONDS_PER_PHASE]   (default 10)
#
# Needs the ports of examples/local_cluster.yaml, 8080 and 6399 free, and
# redis-server and redis-benchmark (Debian: apt-get install redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
work=$(mktemp -d)
trap 'kill $cluster_pid $redis_pid 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
cluster_pid= redis_pid=

CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/...
"$work/bin/tako-cluster" -v "$work/var" > "$work/cluster.out" 2>&1 &
cluster_pid=$!
for _ in $(seq 100); do grep -q "Ctrl-C stops" "$work/cluster.out" && break; sleep 0.2; done
grep -q "Ctrl-C stops" "$work/cluster.out" || { cat "$work/cluster.out"; exit 1; }

echo "## machine: $(nproc) cores, $(go version | cut -d' ' -f3), $(date -u +%F)"
for size in 100 4096; do
	"$work/bin/tako-bench" -prefill -op get -c 64 -d 1s -size $size -keys 100000 > /dev/null
	for c in 16 64; do
		for op in get post; do
			echo "### tako proxy: $op, $c clients, $size B"
			"$work/bin/tako-bench" -op $op -c $c -d ${secs}s -size $size -keys 100000 || true
		done
		echo "### tako Go client straight to the nodes: get, $c clients, $size B"
		"$work/bin/tako-bench" -cfg "$work/var/etc/local_cluster.yaml" -op get -c $c -d ${secs}s -size $size -keys 100000 || true
	done
done

redis-server --port 6399 --bind 127.0.0.1 --save "" --appendonly no --daemonize no > "$work/redis.out" 2>&1 &
redis_pid=$!
sleep 0.5
for size in 100 4096; do
	for c in 16 64; do
		echo "### redis: get/set, $c clients, $size B"
		redis-benchmark -p 6399 -t set,get -c $c -d $size -n $((c * 5000)) -r 100000 -q | tr "\r" "\n" | grep "requests per second"
	done
done
