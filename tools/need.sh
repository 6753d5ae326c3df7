# Sourced by the shell scripts of tests/ and tools/: fail where a needed program is missing,
# naming the program, the Debian package that has it and the install step that should have run.
#   need PROGRAM[:PACKAGE]...      (PACKAGE defaults to PROGRAM)
# and an ERR trap that names the command that failed, so no script dies without a word.

need() {
  local spec prog pkg bad=0
  for spec in "$@"; do
    prog=${spec%%:*}
    pkg=${spec#*:}
    if ! command -v "$prog" >/dev/null 2>&1; then
      echo "error: '$prog' not found: install the Debian package '$pkg' (tools/install-deps.sh installs it for 'make check' and 'make demo')" >&2
      bad=1
    fi
  done
  [ "$bad" = 0 ] || exit 127
}

# Report the failing command (file:line) before set -e ends the script.
trap 'rc=$?; echo "error: ${BASH_SOURCE[0]##*/}:${LINENO}: command failed with status $rc: $BASH_COMMAND" >&2' ERR
set -o errtrace
