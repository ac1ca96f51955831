#!/usr/bin/env bash
# What one request costs each process of the benchmark cluster
# (examples/bench.yaml): CPU time per request, and read and write system
# calls per request (from /proc/PID/stat and /proc/PID/io), for the load
# generator, the nodes and the proxy, under one tako-bench load. Unlike
# throughput, these figures hold on a machine whose CPU is stolen by its
# neighbours (vmstat's "st"), so two builds can be compared on it:
#
#   scripts/cost-per-request.sh [TAKO-BENCH ARGS...]
#   scripts/cost-per-request.sh -url http://127.0.0.1:8090 -op post -c 16 -d 8s
#   scripts/cost-per-request.sh -cfg examples/bench.yaml -op get -c 64 -d 8s
#   scripts/cost-per-request.sh -ceiling        (the ceiling: server and load generator)
#
# (the default load: GET through the proxy, 64 clients, 8 s). Linux only;
# needs the ports of examples/bench.yaml, 8090 and 8091 free.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- -url http://127.0.0.1:8090 -op get -c 64 -d 8s
work=$(mktemp -d)
pids=
cleanup() { kill $pids 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/tako-cluster ./cmd/tako-bench
bin=$work/bin
if [ "$1" = -ceiling ]; then
	"$bin/tako-bench" -ceiling 127.0.0.1:8091 > /dev/null 2>&1 &
	pids=$!
	procs="$pids"
	sleep 0.5
	kill -0 "$pids" 2> /dev/null || { echo "the ceiling did not start (port 8091 taken?)" >&2; exit 1; }
	set -- -url http://127.0.0.1:8091 -op get -c 64 -d 8s
	"$bin/tako-bench" -url http://127.0.0.1:8091 -prefill -op get -c 16 -d 1s > /dev/null
else
	"$bin/tako-cluster" examples/bench.yaml -p 8090 -v "$work/var" > "$work/cluster.out" 2>&1 &
	pids=$!
	for _ in $(seq 150); do grep -q "Ctrl-C stops" "$work/cluster.out" && break; sleep 0.2; done
	grep -q "Ctrl-C stops" "$work/cluster.out" || { cat "$work/cluster.out" >&2; exit 1; }
	"$bin/tako-bench" -url http://127.0.0.1:8090 -prefill -op get -c 16 -d 1s > /dev/null
	procs=$(pgrep -P "$pids" | tr '\n' ' ')
fi
# snap: "PID READS WRITES CPU_TICKS" of every process.
snap() {
	for p in $procs; do
		awk -v p="$p" -v c="$(awk '{ print $14 + $15 }' "/proc/$p/stat")" \
			'/^syscr/ { r = $2 } /^syscw/ { w = $2 } END { print p, r, w, c }' "/proc/$p/io"
	done | sort
}
snap > "$work/before"
TIMEFORMAT='loadgen %U %S'
out=$( { time "$bin/tako-bench" "$@" 2>&1; } 2>&1)
snap > "$work/after"
echo "$out" | grep "ops/s"
ops=$(echo "$out" | awk '/ops\/s/ { for (i = 1; i <= NF; i++) if ($i == "ops") n += $(i + 1) } END { print n + 0 }')
[ "$ops" -gt 0 ] || { echo "no request succeeded" >&2; exit 1; }
hz=$(getconf CLK_TCK)
echo "| process | CPU µs per request | reads per request | writes per request |"
echo "|---|---|---|---|"
echo "$out" | awk -v o="$ops" '/^loadgen/ { printf "| load generator | %.0f | | |\n", ($2 + $3) * 1e6 / o }'
join "$work/before" "$work/after" | while read -r p r1 w1 c1 r2 w2 c2; do
	name=$(tr '\0' ' ' < "/proc/$p/cmdline" | grep -oE -- '-child-[a-z]+ -id [a-z0-9]+|-ceiling' | sed 's/-child-//; s/ -id / /; s/-ceiling/ceiling/')
	awk -v n="$name" -v r=$((r2 - r1)) -v w=$((w2 - w1)) -v c=$((c2 - c1)) -v o="$ops" -v hz="$hz" \
		'BEGIN { printf "| %s | %.0f | %.2f | %.2f |\n", n, c * 1e6 / hz / o, r / o, w / o }'
done
