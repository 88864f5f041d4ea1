#!/usr/bin/env bash
# Installs stock Keylime 7.14.3 from PyPI into a cached virtual environment for the fleet
# test (`make fleet-test`), and prints the venv's bin directory on the last line of stdout.
#
# - System packages (Debian/Ubuntu, installed only when missing): python3-venv for the venv,
#   python3-gpg for GnuPG's bindings (keylime.signing imports `gpg`, which PyPI cannot
#   install without building gpgme), tpm2-tools (Keylime runs tpm2_eventlog on event logs;
#   the test extends a PCR with it), curl (the test reads the verifier's and registrar's APIs).
# - The venv is built on Debian's /usr/bin/python3 with the system site-packages visible
#   (for `gpg` only); everything else is pinned in requirements.txt beside this script and
#   installed into the venv, which takes precedence.
# - Idempotent and cached: ${ARBITER_KEYLIME_VENV:-${XDG_CACHE_HOME:-~/.cache}/arbiter-keylime/venv}.
#   A stamp holds the hash of requirements.txt; a second run with the same file does
#   nothing but check that the programs import. A changed file rebuilds the venv.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/requirements.txt"
venv="${ARBITER_KEYLIME_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/arbiter-keylime/venv}"
python=/usr/bin/python3
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo

log() { echo "install-keylime: $*" >&2; }

missing=""
for p in python3-venv python3-gpg tpm2-tools curl; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  log "installing system packages:$missing"
  $sudo apt-get update -qq >&2
  # shellcheck disable=SC2086 # one word per package
  $sudo apt-get install -y -qq $missing >&2
fi
[ -x "$python" ] || { log "$python is missing: install python3 (apt-get install -y python3)"; exit 1; }

want="$(sha256sum "$requirements" | cut -d' ' -f1) $($python -c 'import sys; print(sys.version.split()[0])')"
stamp="$venv/.arbiter-requirements"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
  && "$venv/bin/python" -c 'import keylime.cmd.registrar, keylime.cmd.verifier, keylime.cmd.tenant' 2>/dev/null; then
  log "cached: $venv"
else
  log "creating $venv"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv --system-site-packages "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --only-binary=:all: --ignore-installed -r "$requirements" >&2
  # The programs must start: their imports are the dependency list the wheel does not carry.
  "$venv/bin/python" -c 'import keylime.cmd.registrar, keylime.cmd.verifier, keylime.cmd.tenant, keylime.cmd.ca, keylime.cmd.keylime_policy'
  echo "$want" >"$stamp"
  log "installed keylime $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("keylime"))') in $venv"
fi
echo "$venv/bin"
