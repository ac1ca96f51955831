#!/usr/bin/env bash
# Runs seeds of the simulator (internal/sim) under the deterministic host
# (sim/feasibility/host: wasip1, randomness from the seed, virtual clocks),
# each twice, and fails when a seed's history breaks a check or the two
# runs print different bytes: a seed is a replay. See
# docs/simulator-design.md.
#
#   scripts/sim-replay.sh SEED...        (default: 1 2 3)
#   scripts/sim-replay.sh scenarios      the scripted scenarios
#                                        (sim.Scenarios) instead of a seed
#   SIM_ONCE=1 scripts/sim-replay.sh ... runs each seed once (a search)
#   SIM_TRACE=1 scripts/sim-replay.sh SEED  runs it once and prints the
#                                        trace of every message and fault
#
# Pebble v2.1.7 does not build for wasip1: the two shims of
# sim/feasibility/shim fill the gaps in a vendored copy, in a temporary
# directory, with go build -overlay.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
[ $# -gt 0 ] || set -- 1 2 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents {} "$work/" 2>/dev/null || cp -r . "$work/"
(cd "$work" && go mod vendor)
pebble=$work/vendor/github.com/cockroachdb/pebble/v2
cat > "$work/overlay.json" <<JSON
{"Replace": {
  "$pebble/internal/rawalloc/rawalloc_wasm.go": "$root/sim/feasibility/shim/rawalloc_wasm.go.in",
  "$pebble/vfs/vfs_wasip1.go": "$root/sim/feasibility/shim/vfs_wasip1.go.in"
}}
JSON
# -trimpath: the copy's temporary path stays out of the build, so that
# Go's build cache serves the next run (the first build of Pebble for
# wasip1 takes about a minute).
(cd "$work" && GOOS=wasip1 GOARCH=wasm go build -trimpath -mod=vendor -overlay overlay.json -o guest.wasm ./internal/sim/guest)
(cd sim/feasibility && go build -o "$work/host" ./host)
if [ -n "${SIM_TRACE:-}" ]; then
	for seed in "$@"; do
		"$work/host" "$work/guest.wasm" "$seed" -trace 2>&1
	done
	exit 0
fi
failed=0
for seed in "$@"; do
	rc=0
	args=("$seed")
	[ "$seed" != scenarios ] || args=(1 scenarios)
	# The two runs at once (the host runs a guest on one core; its clocks
	# are virtual, so the machine's load changes nothing in a run).
	if [ -z "${SIM_ONCE:-}" ]; then
		"$work/host" "$work/guest.wasm" "${args[@]}" > "$work/b.out" 2>&1 &
		second=$!
	fi
	a=$("$work/host" "$work/guest.wasm" "${args[@]}" 2>&1) || rc=$?
	b=$a
	if [ -z "${SIM_ONCE:-}" ]; then
		wait "$second" || true
		b=$(cat "$work/b.out")
	fi
	if [ "$seed" = scenarios ]; then echo "$a"; else echo "$a" | head -1; fi
	if [ $rc != 0 ]; then
		echo "seed $seed failed (exit $rc):" >&2
		echo "$a" >&2
		failed=1
	fi
	if [ "$a" != "$b" ]; then
		echo "seed $seed: two runs differ:" >&2
		diff <(echo "$a") <(echo "$b") >&2 || true
		failed=1
	fi
done
[ $failed = 0 ] && echo "every seed passed its checks and ran the same twice"
exit $failed
