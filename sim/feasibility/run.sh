#!/usr/bin/env bash
# Checks the foundation issue 18's simulator is to stand on (see
# docs/simulator-design.md): that Go code, goroutines, timers and Pebble on
# a crashable in-memory file system, compiled for wasip1 and run under a
# host that controls the randomness and the clocks (host/), run the same
# way every time for one seed and another way for another seed.
#
#   sim/feasibility/run.sh
#
# Pebble v2.1.7 does not build for wasip1; the two small files in shim/
# (Tako's own) fill the gaps in a vendored copy, with go build -overlay, in
# a temporary directory: nothing of Pebble's is copied into this tree.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$here/go.mod" "$here/go.sum" "$here/guest" "$work/"
cd "$work"
go mod vendor
pebble=$work/vendor/github.com/cockroachdb/pebble/v2
cat > overlay.json <<JSON
{"Replace": {
  "$pebble/internal/rawalloc/rawalloc_wasm.go": "$here/shim/rawalloc_wasm.go.in",
  "$pebble/vfs/vfs_wasip1.go": "$here/shim/vfs_wasip1.go.in"
}}
JSON
GOOS=wasip1 GOARCH=wasm go build -mod=vendor -overlay overlay.json -o guest.wasm ./guest
(cd "$here" && go build -o "$work/host" ./host)
a=$("$work/host" guest.wasm 1)
b=$("$work/host" guest.wasm 1)
c=$("$work/host" guest.wasm 2)
echo "seed 1: $a"
echo "seed 1: $b"
echo "seed 2: $c"
[ "$a" = "$b" ] || { echo "FAIL: seed 1 gave two different runs" >&2; exit 1; }
[ "$a" != "$c" ] || { echo "FAIL: seeds 1 and 2 gave the same run" >&2; exit 1; }
echo "deterministic: the same seed gives the same run, another seed another run"
