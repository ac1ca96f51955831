#!/usr/bin/env bash
# The cost of TLS at the HTTP level (docs/performance.md, "Cost of TLS"), in
# one run on this machine: two benchmark clusters of the same shape
# (examples/bench.yaml: 3 nodes, every key on 2, default quorums, durable
# writes, one proxy), one plain and one started with tako-cluster -tls (HTTPS
# on the proxy and the nodes, mutual TLS on every binary connection), driven
# in alternate phases through the proxy (tako-bench -url, keep-alive) and
# through the Go client (tako-bench -cfg: plain TCP, or mutual TLS). Prints a
# Markdown table; the raw output of every phase goes to the file named on
# stderr.
#
#   scripts/bench-tls.sh [SECONDS_PER_PHASE]      (default 10)
#
# Needs ports 4801-4803, 5801-5803, 8090 (plain) and 4811-4813, 5811-5813,
# 8092 (TLS) free.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
keys=100000
work=$(mktemp -d)
raw=$work/raw.txt
plain_pid= tls_pid=
cleanup() {
	kill $plain_pid $tls_pid 2>/dev/null || true
	wait 2>/dev/null || true
	cp "$raw" /tmp/tako-bench-tls-raw.txt 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
echo "raw output: /tmp/tako-bench-tls-raw.txt" >&2

CGO_ENABLED=0 go build -o "$work/bin/" ./cmd/...
bin=$work/bin
# The TLS cluster is examples/bench.yaml with every port 10 higher.
sed -E 's/\b(58|48)0([0-9])\b/\11\2/g' examples/bench.yaml > "$work/bench-tls.yaml"
if grep -Eq '\b(58|48)0[0-9]\b' "$work/bench-tls.yaml"; then
	echo "could not move the ports of examples/bench.yaml for the TLS cluster" >&2
	exit 1
fi
"$bin/tako-cluster" examples/bench.yaml -p 8090 -v "$work/var-plain" > "$work/plain.out" 2>&1 &
plain_pid=$!
"$bin/tako-cluster" "$work/bench-tls.yaml" -tls -p 8092 -v "$work/var-tls" > "$work/tls.out" 2>&1 &
tls_pid=$!
for out in "$work/plain.out" "$work/tls.out"; do
	for _ in $(seq 300); do grep -q "Ctrl-C stops" "$out" && break; sleep 0.2; done
	grep -q "Ctrl-C stops" "$out" || { cat "$out" >&2; exit 1; }
done
# What tako-cluster -tls made: the CA, and the configuration with its tls
# section that the Go client opens.
ca=$work/var-tls/tls/ca.pem
tls_cfg=$work/var-tls/tls/bench-tls.yaml

# bench ARGS...: runs one tako-bench phase; prints "OPS P50 P99".
bench() {
	local out
	out=$("$bin/tako-bench" "$@" 2>&1) || true
	printf '### tako-bench %s\n%s\n' "$*" "$out" >> "$raw"
	echo "$out" | awk '/ops\/s/ { ops += $2; if (!p50) { p50 = $5; p99 = $7 } } END { printf "%d %s %s\n", ops, p50, p99 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'; }

"$bin/tako-bench" -url http://127.0.0.1:8090 -prefill -op get -c 64 -d 1s -keys $keys >> "$raw" 2>&1
"$bin/tako-bench" -url https://127.0.0.1:8092 -ca "$ca" -prefill -op get -c 64 -d 1s -keys $keys >> "$raw" 2>&1

echo "Machine: $(nproc) cores, $(go version | cut -d' ' -f3), $(date -u '+%F %H:%M') UTC, ${secs} s a phase, $keys keys, 100 B values."
echo
echo "| through | op | clients | plain ops/s (p50 / p99) | TLS ops/s (p50 / p99) | TLS / plain |"
echo "|---|---|---|---|---|---|"
row=0
for path in proxy client; do
	for c in 16 64; do
		for op in get post; do
			common=(-op $op -c $c -d "${secs}s" -keys $keys)
			if [ $path = proxy ]; then
				plain_args=(-url http://127.0.0.1:8090 "${common[@]}")
				tls_args=(-url https://127.0.0.1:8092 -ca "$ca" "${common[@]}")
				through="proxy (HTTP / HTTPS)"
			else
				plain_args=(-cfg examples/bench.yaml "${common[@]}")
				tls_args=(-cfg "$tls_cfg" "${common[@]}")
				through="Go client"
			fi
			# Which cluster goes first alternates, so that neither always
			# gets the warmer (or the noisier) half of the row.
			if [ $((row % 2)) = 0 ]; then
				read -r p_ops p_50 p_99 < <(bench "${plain_args[@]}")
				read -r t_ops t_50 t_99 < <(bench "${tls_args[@]}")
			else
				read -r t_ops t_50 t_99 < <(bench "${tls_args[@]}")
				read -r p_ops p_50 p_99 < <(bench "${plain_args[@]}")
			fi
			row=$((row + 1))
			echo "| $through | $op | $c | $p_ops ($p_50 / $p_99) | $t_ops ($t_50 / $t_99) | $(ratio $t_ops $p_ops) |"
		done
	done
done
