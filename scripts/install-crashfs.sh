#!/usr/bin/env bash
# Builds crashfs (tools/crashfs: a FUSE file system that loses, on command,
# what a machine crash loses) into the git-ignored .cache/crashfs with Go,
# unless the build there is of the current source. The machine-crash tests
# use it; they skip, saying so, without it, without root or without
# /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null 2>&1; then
  echo "go not found: install Go to build crashfs" >&2
  exit 1
fi
source_hash=$(cat tools/crashfs/go.mod tools/crashfs/go.sum tools/crashfs/*.go | sha256sum | cut -c1-16)
dir=".cache/crashfs"
if [ -x "$dir/crashfs" ] && [ "$(cat "$dir/source" 2>/dev/null)" = "$source_hash" ]; then
  echo "crashfs: $dir/crashfs"
  exit 0
fi
echo "building crashfs into $dir"
mkdir -p "$dir"
(cd tools/crashfs && go build -trimpath -o "../../$dir/crashfs" .)
echo "$source_hash" > "$dir/source"
echo "crashfs: $dir/crashfs"
