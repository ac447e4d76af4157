# Sourced by the other scripts: makes the checkout's own virtual environment (.venv) with the
# extras asked for, and puts it first on PATH. A system python3 marked externally managed
# (PEP 668, Debian 12, Ubuntu 24.04) is only used to create the venv; nothing is installed into it.
# Usage: source scripts/venv.sh EXTRAS   e.g. `source scripts/venv.sh test`, or "" for none (always
# pass it: a sourced script without arguments sees its caller's).
# PYTHON=/path/to/python3 picks the interpreter (3.11 or newer); TESSERA_VENV the folder.

_tessera_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_tessera_venv="${TESSERA_VENV:-$_tessera_root/.venv}"
_tessera_python="${PYTHON:-python3}"
_tessera_extras="${1:-}"

_tessera_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_tessera_apt() {  # _tessera_apt PACKAGE... : install Debian packages (needs root or sudo)
  command -v apt-get >/dev/null 2>&1 || { echo "error: please install: $*" >&2; return 1; }
  _tessera_as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive _tessera_as_root apt-get install -y -qq "$@" >/dev/null
}

if ! "$_tessera_python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Tessera needs Python 3.11 or newer; '$_tessera_python' is $("$_tessera_python" --version 2>&1)." >&2
  echo "       Set PYTHON=/path/to/python3.11 (or newer) and try again." >&2
  return 1 2>/dev/null || exit 1
fi

if ! "$_tessera_venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$_tessera_venv"
  if ! "$_tessera_python" -m venv "$_tessera_venv" >/dev/null 2>&1; then
    # Debian and Ubuntu ship venv's pip bootstrap in a package of its own.
    rm -rf "$_tessera_venv"
    minor="$("$_tessera_python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    echo "python3 cannot create a virtual environment here; installing python3-venv (apt)" >&2
    _tessera_apt python3-venv "python$minor-venv" || { return 1 2>/dev/null || exit 1; }
    "$_tessera_python" -m venv "$_tessera_venv" || { return 1 2>/dev/null || exit 1; }
  fi
fi

# Install (editable, so the checkout is what runs) when pyproject.toml or the extras changed.
_tessera_spec="$_tessera_root"
[ -n "$_tessera_extras" ] && _tessera_spec="$_tessera_root[$_tessera_extras]"
_tessera_stamp="$_tessera_venv/.tessera-installed${_tessera_extras:+-$_tessera_extras}"
_tessera_want="$(cat "$_tessera_root/pyproject.toml" | cksum)"
if [ "$(cat "$_tessera_stamp" 2>/dev/null)" != "$_tessera_want" ]; then
  echo "installing Tessera${_tessera_extras:+ with [$_tessera_extras]} into $_tessera_venv" >&2
  "$_tessera_venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip \
    || { return 1 2>/dev/null || exit 1; }
  "$_tessera_venv/bin/python" -m pip install -q --disable-pip-version-check -e "$_tessera_spec" \
    || { return 1 2>/dev/null || exit 1; }
  echo "$_tessera_want" >"$_tessera_stamp"
fi

export VIRTUAL_ENV="$_tessera_venv"
export PATH="$_tessera_venv/bin:$PATH"
