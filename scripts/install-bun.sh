#!/usr/bin/env bash
# Installs the pinned Bun into the git-ignored .cache/bun from the npm
# registry (the `bun` package ships its binary), unless it is already there.
# The tests that run on Bun skip, saying so, without it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/npm-runtime.sh
install_runtime .cache/bun bun 1.4.5 bun 1.4.5
