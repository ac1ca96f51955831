#!/usr/bin/env bash
# Builds the tako image (default tag tako:dev) from static binaries
# compiled here; no registry is needed: the base image is scratch.
#   scripts/build-image.sh [TAG]
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-tako:dev}
rm -rf deploy/bin
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o deploy/bin/ ./cmd/...
docker build -q -t "$tag" . >/dev/null
echo "built $tag"
