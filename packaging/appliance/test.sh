#!/usr/bin/env bash
# The appliance test (`make appliance-test`, opt-in): builds the appliance image around
# the given package (and a version 2 of it), boots it under qemu/OVMF with an swtpm TPM
# (boot.sh), and from the host, with the `arbiter` CLI only:
#   - enrols the appliance (EK chain to the VM TPM's local CA) as Alice and Bob, captures
#     the appraisal policy from the first attestation with its real firmware log, compares
#     it with the reference values computed from the build outputs, attests (trusted);
#   - runs a two-party computation (the operator creates it, both submit, both verify the
#     signed result, Alice destroys, Bob verifies the certificate) and leaves a second
#     instance live with Alice's input;
#   - powers off (ACPI), boots again: trusted, the instance still live;
#   - boots a UKI whose command line has one more word (uki.sh variant): degraded
#     (sealing unavailable), the attestation refused with its reasons, the live instance
#     out of reach (no submission, no result, no evaluation);
#   - boots the original again: trusted, and the live instance completes;
#   - upgrades to version 2 with upgrade.sh: refused while an instance is live, then
#     drained, authorized, installed with the data partition carried over, sealed afresh;
#     the old policy refuses the new image, a new capture matches its reference values, and
#     a computation runs on it.
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

step "Identities: an operator (named in the image's configuration) and two parties, alice and bob"
for who in operator alice bob; do
  id="$("$ARBITER" identity new --out "$work/$who/identity" --name "$who")"
  eval "${who}_id=$id"
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

step "Build image version 2 (the same package, ARBITER_APPLIANCE_VERSION=2) for the upgrade"
image2="$work/image-v2"
ARBITER_APPLIANCE_VERSION=2 ARBITER_APPLIANCE_OPERATORS="$operator_id" "$here/build.sh" "$deb" "$image2" 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "build.sh of version 2 failed"
v2_root="$(. "$image2/build.env" && echo "$ROOT_HASH")"
[ "$v2_root" != "$ROOT_HASH" ] || fail "version 2 has the same root hash"
done_step "verity root hash $v2_root"

step "First boot (qemu, OVMF, swtpm over its control socket) until arbiterd answers"
"$here/boot.sh" start "$image" "$vm" "$port"
wait_daemon
done_step "arbiterd answers at $server ($(cat "$vm/accel"))"

step "Alice and Bob enrol the appliance: EK certificate chain to the VM TPM's CA, credential activation"
cas=("$vm/tpm/ca/swtpm-localca-rootca-cert.pem" "$vm/tpm/ca/issuercert.pem")
as alice enroll --ek-ca "${cas[@]}"
as bob enroll --ek-ca "${cas[@]}"
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
# Bob reviewed the same published values: he pins the same policy.
cp "$work/alice/captured.toml" "$work/bob/appraisal.toml"
done_step

step "A two-party computation: the operator creates it, Alice and Bob submit encrypted inputs"
read -r fn_sha < <(as alice functions --json | python3 -c '
import json, sys
f = [f for f in json.load(sys.stdin) if f["name"] == "psi-count" and f["library"]]
assert len(f) == 1, "psi-count is not listed as a library function"
print(f[0]["sha256"])')
manifest() {  # manifest NAME FILE
  cat > "$2" <<JSON
{
  "name": "$1",
  "function": { "sha256": "$fn_sha" },
  "parties": [ { "name": "alice", "identity": "$alice_id" }, { "name": "bob", "identity": "$bob_id" } ],
  "slots": {
    "a": { "providers": ["$alice_id"], "provide": "provide_once" },
    "b": { "providers": ["$bob_id"], "provide": "provide_once" }
  },
  "trigger": { "kind": "all" },
  "readers": { "$alice_id": "result", "$bob_id": "result" },
  "destruction": { "policy": "on_request", "destroyers": ["$alice_id"] }
}
JSON
}
# Customers 0..99 are Alice's, 60..159 Bob's: 40 in common.
python3 -c 'import json; print(json.dumps([f"c{i:03d}@example.com" for i in range(0, 100)]))' > "$work/alice/list.json"
python3 -c 'import json; print(json.dumps([f"c{i:03d}@example.com" for i in range(60, 160)]))' > "$work/bob/list.json"
expected=40
manifest "appliance: customers in common" "$work/manifest-1.json"
inst1="$(as operator instance create "$work/manifest-1.json" --quiet)"
as bob attest --instance "$inst1" > /dev/null || fail "Bob's attestation of instance $inst1 is not trusted"
as alice submit --instance "$inst1" --slot a --file "$work/alice/list.json" --expect-function "$fn_sha" --quiet
as bob submit --instance "$inst1" --slot b --file "$work/bob/list.json" --expect-function "$fn_sha" --quiet
done_step "instance $inst1, both receipts checked"

step "Both read the signed result and verify it; Alice destroys the instance, Bob verifies the certificate"
for who in alice bob; do
  got="$(as "$who" result "$inst1" --wait --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["statement"]["output"]["intersection_size"])')" \
    || fail "$who cannot read a verified result of $inst1"
  [ "$got" = "$expected" ] || fail "$who's signed result says $got, not $expected"
done
as alice destroy "$inst1" || fail "the destruction of $inst1 failed"
as bob verify-destruction "$inst1" || fail "Bob cannot verify the destruction of $inst1"
done_step "signed intersection size $got; destroyed, certificate verified"

step "A live instance for the boot-chain change: Alice submits now, Bob after it"
manifest "appliance: a live instance across boots" "$work/manifest-2.json"
inst2="$(as operator instance create "$work/manifest-2.json" --quiet)"
as alice submit --instance "$inst2" --slot a --file "$work/alice/list.json" --expect-function "$fn_sha" --quiet
done_step "instance $inst2, Alice's input in, Bob's missing"

step "Power off (ACPI) and boot again"
"$here/boot.sh" stop "$vm" || fail "the appliance did not power off cleanly"
"$here/boot.sh" start "$image" "$vm" "$port"
wait_daemon
done_step "arbiterd answers again"

step "Alice attests the rebooted appliance with the same policy: trusted"
out="$(as alice attest)" || { echo "$out"; fail "the second boot's attestation is not trusted"; }
echo "$out"
as bob attest --instance "$inst2" > /dev/null || fail "instance $inst2 is not attested after the reboot"
done_step "trusted; instance $inst2 live (re-measured in the new generation)"

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

step "The live instance is out of reach in the changed boot: no submission, no result, no evaluation"
if as bob submit --instance "$inst2" --slot b --file "$work/bob/list.json" --expect-function "$fn_sha" --quiet > "$work/bob/degraded-submit.txt" 2>&1; then
  fail "Bob's input was accepted by the changed boot"
fi
sed 's/^/  /' "$work/bob/degraded-submit.txt"
if as alice result "$inst2" > "$work/alice/degraded-result.txt" 2>&1; then
  fail "a result of $inst2 was served by the changed boot"
fi
sed 's/^/  /' "$work/alice/degraded-result.txt"
grep -q "sealing_unavailable" "$work/alice/degraded-result.txt" || fail "the result refusal does not say sealing_unavailable"
if as operator instance evaluate "$inst2" > "$work/alice/degraded-evaluate.txt" 2>&1; then
  fail "an evaluation of $inst2 was accepted by the changed boot"
fi
sed 's/^/  /' "$work/alice/degraded-evaluate.txt"
grep -q "sealing_unavailable" "$work/alice/degraded-evaluate.txt" || fail "the evaluation refusal does not say sealing_unavailable"
done_step "submission refused (not attested), result and evaluation refused (sealing_unavailable)"

step "Boot the original image again: trusted as before"
"$here/boot.sh" stop "$vm" || fail "the appliance did not power off cleanly"
"$here/boot.sh" start "$image" "$vm" "$port"
wait_daemon
out="$(as alice attest)" || { echo "$out"; fail "the original image's attestation is not trusted again"; }
echo "$out"
done_step "trusted"

step "The live instance completes on the original image: Bob submits, both verify the result, destroy"
as bob submit --instance "$inst2" --slot b --file "$work/bob/list.json" --expect-function "$fn_sha" --quiet \
  || fail "Bob's input to $inst2 was refused on the original image"
for who in alice bob; do
  got="$(as "$who" result "$inst2" --wait --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["statement"]["output"]["intersection_size"])')" \
    || fail "$who cannot read a verified result of $inst2"
  [ "$got" = "$expected" ] || fail "$who's signed result of $inst2 says $got, not $expected"
done
as alice destroy "$inst2" || fail "the destruction of $inst2 failed"
as bob verify-destruction "$inst2" || fail "Bob cannot verify the destruction of $inst2"
done_step "Alice's input from the first boot and Bob's from this one: $got in common; destroyed, verified"

step "Upgrade refused while an instance is live (upgrade.sh lists it, changes nothing)"
manifest "appliance: live across an upgrade attempt" "$work/manifest-3.json"
inst3="$(as operator instance create "$work/manifest-3.json" --quiet)"
as alice submit --instance "$inst3" --slot a --file "$work/alice/list.json" --expect-function "$fn_sha" --quiet
set +e
ARBITER="$ARBITER" ARBITER_STATE="$work/operator" "$here/upgrade.sh" "$image2" "$vm" "$port" > "$work/upgrade-refused.txt" 2>&1
rc=$?
set -e
sed 's/^/  /' "$work/upgrade-refused.txt"
[ "$rc" = 2 ] || fail "upgrade.sh with a live instance exited $rc, not 2 (refused)"
grep -q "$inst3" "$work/upgrade-refused.txt" || fail "the refusal does not list the live instance"
out="$(as alice attest)" || { echo "$out"; fail "the refused upgrade changed the running appliance"; }
done_step "refused (exit 2), $inst3 listed, the appliance untouched and trusted"

step "Drain: the instance completes and is destroyed; nothing is live"
as bob submit --instance "$inst3" --slot b --file "$work/bob/list.json" --expect-function "$fn_sha" --quiet
as alice result "$inst3" --wait > /dev/null || fail "no verified result of $inst3"
as alice destroy "$inst3" > /dev/null || fail "the destruction of $inst3 failed"
as bob verify-destruction "$inst3" > /dev/null || fail "Bob cannot verify the destruction of $inst3"
as operator upgrade status
done_step "$inst3 evaluated and destroyed"

step "Upgrade to image version 2 (upgrade.sh: authorize, power off, install, boot, seal afresh)"
ARBITER="$ARBITER" ARBITER_STATE="$work/operator" "$here/upgrade.sh" "$image2" "$vm" "$port" 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "upgrade.sh failed"
done_step "version 2 booted, arbiterd healthy"

step "Alice's old policy refuses the new image; her new capture matches the published reference values"
if out="$(as alice attest 2>&1)"; then
  echo "$out"
  fail "the old policy trusted the new image"
fi
echo "$out" | grep -q "pcr: PCR 4" || { echo "$out"; fail "the refusal does not name PCR 4"; }
as alice policy capture --out "$work/alice/captured-v2.toml" > /dev/null
as alice policy compare "$work/alice/captured-v2.toml" --reference "$image2/reference.toml" \
  || fail "the new image's capture does not match its published reference values"
cp "$work/alice/captured-v2.toml" "$work/alice/appraisal.toml"
cp "$work/alice/captured-v2.toml" "$work/bob/appraisal.toml"
out="$(as alice attest)" || { echo "$out"; fail "the new image is not trusted with its reference values"; }
echo "$out"
done_step "old policy refused; new capture = reference values; trusted (the same pinned AK)"

step "A two-party computation on the upgraded appliance"
manifest "appliance: after the upgrade" "$work/manifest-4.json"
inst4="$(as operator instance create "$work/manifest-4.json" --quiet)"
as alice submit --instance "$inst4" --slot a --file "$work/alice/list.json" --expect-function "$fn_sha" --quiet
as bob submit --instance "$inst4" --slot b --file "$work/bob/list.json" --expect-function "$fn_sha" --quiet
got="$(as bob result "$inst4" --wait --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["statement"]["output"]["intersection_size"])')" \
  || fail "Bob cannot read a verified result of $inst4"
[ "$got" = "$expected" ] || fail "the signed result of $inst4 says $got, not $expected"
as alice destroy "$inst4" > /dev/null || fail "the destruction of $inst4 failed"
as bob verify-destruction "$inst4" > /dev/null || fail "Bob cannot verify the destruction of $inst4"
done_step "$got in common; destroyed, verified"

"$here/boot.sh" stop "$vm" || fail "the appliance did not power off cleanly"
printf '\nappliance test passed in %d s (%s)\n' "$((SECONDS - t0))" "$(cat "$vm/accel")"
printf '%s\n' "${timings[@]}"
