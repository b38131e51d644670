#!/usr/bin/env bash
# Installs a pinned Node.js LTS into the git-ignored .cache/node<major> from
# the npm registry (the `node` package ships its binary), unless it is
# already there: `bash scripts/install-node.sh` for 24 (what CI runs on, put
# first on PATH by .ci/run), `bash scripts/install-node.sh 22` for the
# consumer test's second runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
major=${1:-24}
case "$major" in
  24) version=24.21.0 ;;
  22) version=22.23.3 ;;
  *) echo "no pinned Node.js $major" >&2; exit 2 ;;
esac
dir=.cache/node$major
if [ -x "$dir/node_modules/.bin/node" ] && [ "$("$dir/node_modules/.bin/node" --version)" = "v$version" ]; then
  echo "node ${version}: $dir/node_modules/.bin/node"
  exit 0
fi
mkdir -p "$dir"
echo '{"name":"weft-node-runtime","private":true}' > "$dir/package.json"
(cd "$dir" && npm install --no-audit --no-fund --foreground-scripts --loglevel=error "node@${version}" >/dev/null)
echo "node $("$dir/node_modules/.bin/node" --version): $dir/node_modules/.bin/node"
