#!/usr/bin/env bash
# Installs the pinned Node.js LTS the CI runs on into the git-ignored
# .cache/node24 from the npm registry (the `node` package ships its binary),
# unless it is already there. `.ci/run` puts it first on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
version=24.21.0
dir=.cache/node24
if [ -x "$dir/node_modules/.bin/node" ] && [ "$("$dir/node_modules/.bin/node" --version)" = "v$version" ]; then
  echo "node ${version}: $dir/node_modules/.bin/node"
  exit 0
fi
mkdir -p "$dir"
echo '{"name":"weft-node-runtime","private":true}' > "$dir/package.json"
(cd "$dir" && npm install --no-audit --no-fund --foreground-scripts --loglevel=error "node@${version}" >/dev/null)
echo "node $("$dir/node_modules/.bin/node" --version): $dir/node_modules/.bin/node"
