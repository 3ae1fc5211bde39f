# npm_deps.sh: sourced by the deploy checks. npm_deps DIR PKG... installs the
# npm packages into DIR/node_modules unless they are there already; exits 77
# (SKIP) when node/npm are missing or the registry cannot be reached.
npm_deps() {
  local dir=$1; shift
  command -v node >/dev/null || { echo "SKIP: node not installed (apt-get install nodejs npm)"; exit 77; }
  local missing=()
  for p in "$@"; do [ -d "$dir/node_modules/$p" ] || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v npm >/dev/null || { echo "SKIP: npm not installed (apt-get install npm)"; exit 77; }
  mkdir -p "$dir"
  [ -f "$dir/package.json" ] || echo '{"name":"ember-deploy-checks","private":true}' > "$dir/package.json"
  if ! (cd "$dir" && npm install --no-audit --no-fund --loglevel=error "${missing[@]}" >/dev/null 2>"$dir/npm-install.log"); then
    tail -3 "$dir/npm-install.log"
    echo "SKIP: cannot install npm packages ${missing[*]}"
    exit 77
  fi
}
