#!/bin/sh
# The daemon container: arbiterd on the TPM named by ARBITER_TCTI (the swtpm service
# `swtpm:host=swtpm,port=2321`, or `device:/dev/tpmrm0` with the host's TPM passed in), the
# configuration /etc/arbiter/arbiterd.toml (mount your own over it), state on the volume
# /var/lib/arbiter. ARBITER_OPERATORS, when set, is the TOML list of operator identities
# (`["<sha256 of the SPKI>"]`, what `arbiter identity new` prints). Extra arguments are
# passed to `arbiterd run`, e.g. `--set limits.max_wait_seconds=30`.
set -eu
set -- --config /etc/arbiter/arbiterd.toml --tcti "${ARBITER_TCTI:?set ARBITER_TCTI}" "$@"
if [ -n "${ARBITER_OPERATORS:-}" ]; then
  set -- "$@" --set "access.operators=$ARBITER_OPERATORS"
fi
# With CAP_IPC_LOCK in the bounding set, the copy of arbiterd that carries it as a file
# capability (so it can lock its memory whatever the memlock limit); else the plain one.
bounding="$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)"
if [ $(( (0x${bounding:-0} >> 14) & 1 )) = 1 ] && [ -x /usr/libexec/arbiter/arbiterd-ipc-lock ]; then
  exec /usr/libexec/arbiter/arbiterd-ipc-lock run "$@"
fi
exec /usr/bin/arbiterd run "$@"
