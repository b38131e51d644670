#!/usr/bin/env bash
# Builds a pinned nats-server line with `go install` into the git-ignored
# .cache/, unless it is already there: the current line (the tests'
# `line: 'current'`) by default, or `previous` (2.12, the tests' `line:
# 'previous'`, run by WEFT_LONG=1). Debian's nats-server on PATH stays the
# old line.
set -euo pipefail
cd "$(dirname "$0")/.."
line="${1:-current}"
case "$line" in
  current) constant=currentNatsVersion ;;
  previous) constant=previousNatsVersion ;;
  *) echo "usage: bash scripts/install-nats-server.sh [current|previous]" >&2; exit 2 ;;
esac
version=$(sed -n "s/^export const ${constant} = '\(.*\)';$/\1/p" packages/test-servers/src/nats.ts)
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
