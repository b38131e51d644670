#!/usr/bin/env bash
# Builds the pinned current nats-server line with `go install` into the
# git-ignored .cache/ (the tests' `line: 'current'`), unless it is already
# there. Debian's nats-server on PATH stays the old line.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n "s/^export const currentNatsVersion = '\(.*\)';$/\1/p" packages/test-servers/src/nats.ts)
dir=".cache/nats-server-v${version}"
if [ -x "$dir/nats-server" ]; then
  echo "nats-server ${version}: $dir/nats-server"
  exit 0
fi
command -v go >/dev/null 2>&1 || export PATH="$PATH:/usr/local/go/bin"
if ! command -v go >/dev/null 2>&1; then
  echo "go not found: install Go to build nats-server ${version}" >&2
  exit 1
fi
echo "building nats-server ${version} into $dir"
mkdir -p "$dir"
GOBIN="$PWD/$dir" go install "github.com/nats-io/nats-server/v2@v${version}"
"$dir/nats-server" --version
