#!/usr/bin/env bash
# The performance table of docs/performance.md, in one run on this machine:
# the benchmark cluster (examples/bench.yaml: 3 nodes, every key on 2, default
# quorums, durable writes, one proxy) through the proxy and through the Go
# client (coordinating each request itself, and, with client.Options.Forward,
# forwarding it to a node that coordinates it), against the ceiling (tako-bench -ceiling: a map behind a mutex over
# net/http) and Redis (one instance, no persistence, redis-benchmark), at the
# same concurrency and value size; and a node's own HTTP port (n1, which
# coordinates every request it gets). Prints a Markdown table, then every
# ratio that moved by more than 20% against the committed figures
# (docs/bench-ratios.tsv); the raw output of every phase goes to the file
# named on stderr.
#
#   scripts/bench.sh [SECONDS_PER_PHASE]      (default 10)
#   BENCH_SAVE=1 scripts/bench.sh 8           (and commit docs/bench-ratios.tsv)
#
# Needs ports 4801-4803, 5801-5803, 8090, 8091 and 6399 free, and for the
# Redis column redis-server and redis-benchmark (apt-get install redis-server).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
keys=100000
work=$(mktemp -d)
raw=$work/raw.txt
cluster_pid= ceiling_pid= redis_pid=
cleanup() {
	kill $cluster_pid $ceiling_pid $redis_pid 2>/dev/null || true
	wait 2>/dev/null || true
	cp "$raw" /tmp/tako-bench-raw.txt 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
echo "raw output: /tmp/tako-bench-raw.txt" >&2

CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/...
bin=$work/bin
"$bin/tako-cluster" examples/bench.yaml -p 8090 -v "$work/var" > "$work/cluster.out" 2>&1 &
cluster_pid=$!
"$bin/tako-bench" -ceiling 127.0.0.1:8091 > "$work/ceiling.out" 2>&1 &
ceiling_pid=$!
for _ in $(seq 150); do grep -q "Ctrl-C stops" "$work/cluster.out" && break; sleep 0.2; done
grep -q "Ctrl-C stops" "$work/cluster.out" || { cat "$work/cluster.out" >&2; exit 1; }
have_redis=
if command -v redis-server > /dev/null && command -v redis-benchmark > /dev/null; then
	redis-server --port 6399 --bind 127.0.0.1 --save "" --appendonly no --daemonize no > "$work/redis.out" 2>&1 &
	redis_pid=$!
	have_redis=1
	sleep 0.5
fi

# bench ARGS...: runs one tako-bench phase; prints "OPS P50 P99" of each
# operation line ("get ..." / "post ..."), summed ops for a mix.
bench() {
	local out
	out=$("$bin/tako-bench" "$@" 2>&1) || true
	printf '### tako-bench %s\n%s\n' "$*" "$out" >> "$raw"
	echo "$out" | awk '/ops\/s/ { ops += $2; if (!p50) { p50 = $5; p99 = $7 } } END { printf "%d %s %s\n", ops, p50, p99 }'
}

# redis OP CLIENTS SIZE: ops/s of redis-benchmark for GET or SET.
redis() {
	[ -n "$have_redis" ] || { echo 0; return; }
	local out
	out=$(redis-benchmark -p 6399 -t "$1" -c "$2" -d "$3" -n $(($2 * 4000)) -r $keys -q --csv 2>&1)
	printf '### redis-benchmark %s %s %s\n%s\n' "$1" "$2" "$3" "$out" >> "$raw"
	echo "$out" | awk -F'"' 'NR > 1 && $2 != "" { print int($4); exit }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

# ms DURATION: a Go duration (710µs, 1.19ms, 1.2s) in milliseconds.
ms() {
	awk -v d="$1" 'BEGIN {
		if (d ~ /µs$/) { sub(/µs$/, "", d); printf "%.4f", d / 1000 }
		else if (d ~ /ms$/) { sub(/ms$/, "", d); printf "%.4f", d }
		else if (d ~ /s$/) { sub(/s$/, "", d); printf "%.4f", d * 1000 }
		else printf "0" }'
}

# The ratios of this run, one per line: "OP CLIENTS SIZE NAME VALUE", for the
# comparison with the committed figures (docs/bench-ratios.tsv).
ratios=$work/ratios.tsv
: > "$ratios"
record() { [ "$5" = "n/a" ] || printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$ratios"; }

echo "Machine: $(nproc) cores, $(go version | cut -d' ' -f3), $(date -u '+%F %H:%M') UTC, ${secs} s a phase, $keys keys."
echo
echo "| op | clients | value | proxy ops/s (p50 / p99) | node HTTP ops/s (p50 / p99) | Go client, forwarding ops/s (p50 / p99) | Go client (coordinating) ops/s (p50 / p99) | ceiling ops/s (p50 / p99) | Redis ops/s | proxy / ceiling | node / ceiling | forwarding Go client / ceiling | Go client / ceiling | proxy / Redis | proxy p99 / ceiling p99 | node p99 / ceiling p99 | Go client p99 / ceiling p99 |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for size in 100 4096; do
	"$bin/tako-bench" -url http://127.0.0.1:8090 -prefill -op get -c 64 -d 1s -size $size -keys $keys >> "$raw" 2>&1
	"$bin/tako-bench" -url http://127.0.0.1:8091 -prefill -op get -c 64 -d 1s -size $size -keys $keys >> "$raw" 2>&1
	[ -z "$have_redis" ] || redis-benchmark -p 6399 -t set -c 64 -d $size -n $keys -r $keys -q > /dev/null 2>&1
	for c in 16 64; do
		for op in get post mix; do
			read -r p_ops p_50 p_99 < <(bench -url http://127.0.0.1:8090 -op $op -c $c -d "${secs}s" -size $size -keys $keys)
			read -r n_ops n_50 n_99 < <(bench -url http://127.0.0.1:5801 -op $op -c $c -d "${secs}s" -size $size -keys $keys)
			read -r g_ops g_50 g_99 < <(bench -cfg examples/bench.yaml -forward -op $op -c $c -d "${secs}s" -size $size -keys $keys)
			read -r k_ops k_50 k_99 < <(bench -cfg examples/bench.yaml -op $op -c $c -d "${secs}s" -size $size -keys $keys)
			read -r c_ops c_50 c_99 < <(bench -url http://127.0.0.1:8091 -op $op -c $c -d "${secs}s" -size $size -keys $keys)
			case $op in
			get) r_ops=$(redis get $c $size) ;;
			post) r_ops=$(redis set $c $size) ;;
			mix) r_ops=0 ;;
			esac
			r_col=$r_ops; [ "$r_ops" != 0 ] || r_col="n/a"
			pc=$(ratio $p_ops $c_ops) nc=$(ratio $n_ops $c_ops) gc=$(ratio $g_ops $c_ops) kc=$(ratio $k_ops $c_ops) pr=$(ratio $p_ops $r_ops)
			p99=$(ratio "$(ms $p_99)" "$(ms $c_99)") n99=$(ratio "$(ms $n_99)" "$(ms $c_99)") k99=$(ratio "$(ms $k_99)" "$(ms $c_99)")
			echo "| $op | $c | $size B | $p_ops ($p_50 / $p_99) | $n_ops ($n_50 / $n_99) | $g_ops ($g_50 / $g_99) | $k_ops ($k_50 / $k_99) | $c_ops ($c_50 / $c_99) | $r_col | $pc | $nc | $gc | $kc | $pr | $p99 | $n99 | $k99 |"
			record $op $c $size proxy/ceiling "$pc"
			record $op $c $size node/ceiling "$nc"
			record $op $c $size client/ceiling "$gc"
			record $op $c $size coordinating-client/ceiling "$kc"
			record $op $c $size coordinating-client-p99/ceiling-p99 "$k99"
			record $op $c $size proxy-p99/ceiling-p99 "$p99"
			record $op $c $size node-p99/ceiling-p99 "$n99"
		done
	done
done

# Compare with the committed figures: name every ratio that moved by more
# than 20%. BENCH_SAVE=1 makes this run's ratios the committed ones.
committed=docs/bench-ratios.tsv
echo
if [ -f "$committed" ]; then
	echo "Ratios that moved by more than 20% against $committed:"
	awk -F'\t' 'NR == FNR { was[$1 " " $2 " " $3 " " $4] = $5; next }
		{ k = $1 " " $2 " " $3 " " $4; if (!(k in was) || was[k] <= 0) next; r = $5 / was[k];
		  if (r > 1.2 || r < 1 / 1.2) { printf "- %s, %s clients, %s B, %s: %s, was %s (x%.2f)\n", $1, $2, $3, $4, $5, was[k], r; n++ } }
		END { if (!n) print "- none" }' "$committed" "$ratios"
else
	echo "No committed ratios ($committed) to compare with."
fi
if [ -n "${BENCH_SAVE:-}" ]; then
	{ printf '# op\tclients\tsize\tratio\tvalue (scripts/bench.sh, %s)\n' "$(date -u '+%F %H:%M UTC')"; cat "$ratios"; } > "$committed"
	echo "Saved this run's ratios to $committed."
fi
