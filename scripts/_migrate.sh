# Sourced by scripts/migrate-primary, -data and -all: `migrate TREE ARGS...`.
# Without --repair: pre-flight checks, then `backoffice db upgrade TREE ARGS...`.
# With --repair (anywhere among the arguments, as the previous system's scripts took it):
# `backoffice db repair TREE ARGS...`, which stamps the tree's head only after comparing the
# live schema with the models, for a database whose version row is missing or wrong.
migrate() {
  local tree="$1" repair=0
  shift
  local rest=()
  for arg in "$@"; do
    if [ "$arg" = "--repair" ]; then
      repair=1
    else
      rest+=("$arg")
    fi
  done
  local command=(upgrade)
  if [ "$repair" = 1 ]; then
    command=(repair)
  fi
  exec "$(dirname "${BASH_SOURCE[0]}")/backoffice" db "${command[@]}" "$tree" ${rest[@]+"${rest[@]}"}
}
