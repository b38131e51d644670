#!/usr/bin/env bash
# Installs the pinned Bun into the git-ignored .cache/bun from the npm
# registry (the `bun` package ships its binary), unless it is already there.
# The tests that run on Bun skip, saying so, without it.
set -euo pipefail
cd "$(dirname "$0")/.."
version=1.4.5
dir=.cache/bun
if [ -x "$dir/node_modules/.bin/bun" ] && [ "$("$dir/node_modules/.bin/bun" --version)" = "$version" ]; then
  echo "bun ${version}: $dir/node_modules/.bin/bun"
  exit 0
fi
mkdir -p "$dir"
echo '{"name":"weft-bun-runtime","private":true}' > "$dir/package.json"
(cd "$dir" && npm install --no-audit --no-fund --foreground-scripts --loglevel=error "bun@${version}" >/dev/null)
echo "bun $("$dir/node_modules/.bin/bun" --version): $dir/node_modules/.bin/bun"
