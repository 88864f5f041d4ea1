#!/usr/bin/env bash
# Installs Schemathesis 4.32.5 from PyPI into a cached virtual environment for the API fuzz
# run (`make api-fuzz`, docs/reliability.md) and prints the path of its `st` program on the
# last line of stdout.
#
# - python3-venv (Debian/Ubuntu) is installed when missing; the venv is built on
#   /usr/bin/python3 and holds exactly requirements.txt beside this script (wheels only).
# - Idempotent and cached: ${ARBITER_SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-~/.cache}/arbiter-schemathesis/venv}.
#   A stamp holds the hash of requirements.txt and the Python version; a second run with the
#   same file only checks that `st` starts. A changed file rebuilds the venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/requirements.txt"
venv="${ARBITER_SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/arbiter-schemathesis/venv}"
python=/usr/bin/python3
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

log() { echo "install-schemathesis: $*" >&2; }

if ! dpkg -s python3-venv >/dev/null 2>&1; then
  log "installing python3-venv"
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq python3-venv >&2
fi
[ -x "$python" ] || { log "$python is missing: install python3 (apt-get install -y python3)"; exit 1; }

want="$(sha256sum "$requirements" | cut -d' ' -f1) $($python -c 'import sys; print(sys.version.split()[0])')"
stamp="$venv/.arbiter-requirements"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/st" --version >/dev/null 2>&1; then
  log "cached: $venv"
else
  log "creating $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --only-binary=:all: -r "$requirements" >&2
  "$venv/bin/st" --version >&2
  echo "$want" >"$stamp"
  log "installed $("$venv/bin/st" --version) in $venv"
fi
echo "$venv/bin/st"
