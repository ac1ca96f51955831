#!/usr/bin/env bash
# Backup and restore speed against the refill of a lost disk, in one run on
# this machine (docs/performance.md, "Backup and restore"): TestBackupRate
# with 1 GiB of 64 KiB values on a cluster of two one-node buckets, every
# key on both. It times n2's refill after it lost its disk (the reference),
# tako backup of the cluster, and tako restore into an empty cluster of the
# same shape, and fails when a backup or a restore runs at less than half
# the refill's rate. Prints the figures line, then the test's log lines; the
# whole output goes to the file named on stderr.
#
#   scripts/bench-backup.sh [MIB]      (default 1024)
#
# Takes a few minutes; run it on a machine nothing else loads.
set -euo pipefail
cd "$(dirname "$0")/.."
mib=${1:-1024}
out=/tmp/tako-bench-backup.txt
echo "full output: $out" >&2
status=0
TAKO_BACKUP_MIB=$mib go test -count=1 -timeout 30m -run 'TestBackupRate$' -v ./tests/e2e > "$out" 2>&1 || status=$?
grep -E '^backup: ' "$out" || { tail -50 "$out" >&2; exit 1; }
grep -E '^\s+backup_rate_test.go:[0-9]+: ' "$out" || true
if [ "$status" -ne 0 ]; then
	echo "TestBackupRate failed (exit $status): see $out" >&2
fi
exit "$status"
