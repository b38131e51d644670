#!/usr/bin/env bash
# Installs a pinned Node.js LTS into the git-ignored .cache/node<major> from
# the npm registry (the `node` package ships its binary), unless it is
# already there: `bash scripts/install-node.sh` for 24 (what CI runs on, put
# first on PATH by .ci/run), `bash scripts/install-node.sh 22` for the
# consumer test's second runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/npm-runtime.sh
major=${1:-24}
case "$major" in
  24) version=24.21.0 ;;
  22) version=22.23.3 ;;
  *) echo "no pinned Node.js $major" >&2; exit 2 ;;
esac
install_runtime ".cache/node$major" node "$version" node "v$version"
