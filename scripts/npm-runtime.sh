# Sourced by install-node.sh and install-bun.sh: installs a runtime the npm
# registry ships as a package (its binary inside it) into a git-ignored
# .cache/ folder of its own, unless the pinned version is already there.
#   install_runtime DIR PACKAGE VERSION BIN EXPECTED
# installs PACKAGE@VERSION into DIR, whose BIN must then print EXPECTED for --version.
install_runtime() {
  local dir=$1 package=$2 version=$3 bin=$4 expected=$5
  local path="$dir/node_modules/.bin/$bin"
  if [ -x "$path" ] && [ "$("$path" --version)" = "$expected" ]; then
    echo "$bin $expected: $path"
    return 0
  fi
  mkdir -p "$dir"
  echo "{\"name\":\"weft-$bin-runtime\",\"private\":true}" > "$dir/package.json"
  (cd "$dir" && npm install --no-audit --no-fund --foreground-scripts --loglevel=error "$package@$version" >/dev/null)
  echo "$bin $("$path" --version): $path"
}
