#!/usr/bin/env bash
# The appliance test (`make appliance-test`, opt-in): builds the appliance image around
# the given package, boots it under qemu/OVMF with an swtpm TPM (boot.sh), and from the
# host, with the `arbiter` CLI only: waits for arbiterd, enrols the appliance (EK chain to
# the VM TPM's local CA), captures the appraisal policy from the first attestation with
# its real firmware log and compares it with the reference values computed from the
# build outputs, attests with that policy (trusted, nothing unpinned), powers the machine
# off, boots it again and attests again (trusted: the same measured values); boots a UKI
# whose command line has one more word (uki.sh variant): the daemon reports its degraded
# state (sealing unavailable) and the attestation is refused with its reasons; boots the
# original again: trusted as before.
# Prints how long each step took; on failure the tail of the serial console.
#
#   packaging/appliance/test.sh DEB ARBITER_CLI [WORK]   # WORK: target/appliance/test
#
# Environment: ARBITER_APPLIANCE_ACCEL=tcg forces TCG (no KVM); ARBITER_APPLIANCE_PORT
# the host port forwarded to arbiterd (default: a free one).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
deb="$(realpath "${1:?usage: test.sh DEB ARBITER_CLI [WORK]}")"
ARBITER="$(realpath "${2:?usage: test.sh DEB ARBITER_CLI [WORK]}")"
work="${3:-target/appliance/test}"
rm -rf "$work"
mkdir -p "$work"
work="$(realpath "$work")"
image="$work/image"
vm="$work/vm"
port="${ARBITER_APPLIANCE_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
server="https://127.0.0.1:$port"
export TSS2_LOG=all+NONE

t0=$SECONDS
step_start=$SECONDS
timings=()
step() { printf '\n== %s\n' "$*"; step_start=$SECONDS; step_name="$*"; }
done_step() {
  local d=$((SECONDS - step_start))
  timings+=("$(printf '%5d s  %s' "$d" "$step_name")")
  printf 'ok (%d s): %s\n' "$d" "${1:-$step_name}"
}
fail() {
  printf 'FAIL: %s\n' "$*" >&2
  if [ -f "$vm/serial.log" ]; then
    echo "--- last 60 lines of the serial console ($vm/serial.log):" >&2
    tail -60 "$vm/serial.log" >&2
  fi
  exit 1
}
cleanup() { "$here/boot.sh" stop "$vm" > /dev/null 2>&1 || true; }
trap cleanup EXIT
as() { local who="$1"; shift; ARBITER_STATE="$work/$who" "$ARBITER" "$@"; }

wait_daemon() {
  local limit=180
  [ "$(cat "$vm/accel")" = tcg ] && limit=900
  for _ in $(seq "$limit"); do
    as alice health > /dev/null 2>&1 && return 0
    [ -s "$vm/qemu.pid" ] && kill -0 "$(cat "$vm/qemu.pid")" 2> /dev/null \
      || fail "qemu exited before arbiterd answered"
    sleep 1
  done
  fail "arbiterd did not answer at $server within $limit s"
}

step "Identities: an operator (named in the image's configuration) and a party, alice"
for who in operator alice; do
  id="$("$ARBITER" identity new --out "$work/$who/identity" --name "$who")"
  [ "$who" = operator ] && operator_id="$id"
  cat > "$work/$who/config.toml" <<TOML
server = "$server"
cert = "identity/cert.pem"
key = "identity/key.pem"
policy = "appraisal.toml"
TOML
done
done_step "operator $operator_id"

step "Build the appliance image (packaging/appliance/build.sh)"
ARBITER_APPLIANCE_OPERATORS="$operator_id" "$here/build.sh" "$deb" "$image" 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "build.sh failed"
# shellcheck disable=SC1091
. "$image/build.env"
done_step "disk $(du -h --apparent-size "$image/disk.img" | cut -f1), verity root hash $ROOT_HASH, UKI $UKI_SHA256"

step "First boot (qemu, OVMF, swtpm over its control socket) until arbiterd answers"
"$here/boot.sh" start "$image" "$vm" "$port"
wait_daemon
done_step "arbiterd answers at $server ($(cat "$vm/accel"))"

step "Alice enrols the appliance: EK certificate chain to the VM TPM's CA, credential activation"
as alice enroll --ek-ca "$vm/tpm/ca/swtpm-localca-rootca-cert.pem" "$vm/tpm/ca/issuercert.pem"
done_step

step "Alice captures the policy from the first attestation, with its real firmware log"
as alice policy capture --out "$work/alice/captured.toml" --log-out "$work/alice/firmware.log"
cat "$work/alice/captured.toml"
as alice eventlog show "$work/alice/firmware.log" > "$work/alice/firmware-events.txt"
done_step "policy $work/alice/captured.toml, log $(stat -c %s "$work/alice/firmware.log") bytes"

step "The capture against the reference values computed from the build outputs"
as alice policy compare "$work/alice/captured.toml" --reference "$image/reference.toml" \
  | tee "$work/alice/compare.txt" || fail "the capture does not match the image's reference values"
done_step

step "Alice attests with the captured policy: trusted, nothing unpinned"
cp "$work/alice/captured.toml" "$work/alice/appraisal.toml"
out="$(as alice attest)" || { echo "$out"; fail "the first boot's attestation is not trusted"; }
echo "$out"
echo "$out" | grep -q "WARNING" && fail "the verdict carries a warning"
done_step

step "Power off (ACPI) and boot again"
"$here/boot.sh" stop "$vm" || fail "the appliance did not power off cleanly"
"$here/boot.sh" start "$image" "$vm" "$port"
wait_daemon
done_step "arbiterd answers again"

step "Alice attests the rebooted appliance with the same policy: trusted"
out="$(as alice attest)" || { echo "$out"; fail "the second boot's attestation is not trusted"; }
echo "$out"
done_step

step "Boot with a changed kernel command line (the same kernel, initramfs and root; one more word)"
"$here/uki.sh" variant "$image" "$work/changed" arbiter.test=changed-cmdline
"$here/boot.sh" stop "$vm" || fail "the appliance did not power off cleanly"
"$here/boot.sh" start "$work/changed" "$vm" "$port"
wait_daemon
health="$(as alice health)"
echo "$health"
echo "$health" | grep -q '"status":"degraded"' || fail "the daemon does not report the degraded state"
echo "$health" | grep -q 'sealing' || fail "the degraded state does not name sealing"
done_step "arbiterd answers, degraded: sealing unavailable"

step "Alice attests with her policy: refused, with the reasons"
if out="$(as alice attest 2>&1)"; then
  echo "$out"
  fail "an attestation of the changed boot was trusted"
fi
echo "$out"
echo "$out" | grep -q "pcr" || fail "the refusal does not name the changed PCRs"
done_step "refused"

step "Boot the original image again: trusted as before"
"$here/boot.sh" stop "$vm" || fail "the appliance did not power off cleanly"
"$here/boot.sh" start "$image" "$vm" "$port"
wait_daemon
out="$(as alice attest)" || { echo "$out"; fail "the original image's attestation is not trusted again"; }
echo "$out"
done_step "trusted"

"$here/boot.sh" stop "$vm" || fail "the appliance did not power off cleanly"
printf '\nappliance test passed in %d s (%s)\n' "$((SECONDS - t0))" "$(cat "$vm/accel")"
printf '%s\n' "${timings[@]}"
