#!/usr/bin/env bash
# The refill of a node that lost its disk (docs/performance.md, "Refill
# after a lost disk"), in one run on this machine: TestRefillRate with 1 GiB
# of 64 KiB values on a cluster of two one-node buckets, every key on both.
# It measures the disk's sequential write speed, wipes n2's disk and times
# its refill from n1, then measures the foreground p99 on n1 without a
# refill and while n2 refills again. Prints the figures line, then the
# test's own log lines (the detail); the test's whole output goes to the
# file named on stderr.
#
#   scripts/bench-refill.sh [MIB]      (default 1024)
#
# Takes a few minutes; run it on a machine nothing else loads.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
out=/tmp/tako-bench-refill.txt
echo "full output: $out" >&2
status=0
TAKO_REFILL_MIB=$mib go test -count=1 -timeout 30m -run 'TestRefillRate$' -v ./tests/e2e > "$out" 2>&1 || status=$?
grep -E '^refill: ' "$out" || { tail -50 "$out" >&2; exit 1; }
grep -E '^\s+refill_test.go:[0-9]+: ' "$out" || true
if [ "$status" -ne 0 ]; then
	echo "TestRefillRate failed (exit $status): see $out" >&2
fi
exit "$status"
