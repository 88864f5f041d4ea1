#!/usr/bin/env bash
# Arbiter's main job, end to end, on a private software TPM: a daemon (`arbiterd run
# --dev-swtpm`) and two parties, Alice and Bob, who use only the `arbiter` CLI. Each step
# is printed; the script exits 0 only if every check passed.
#
# Usage: client/demo/demo.sh [TARGET_DIR]   (after `cargo build -p arbiter-daemon -p arbiter-client`)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-$root/target/debug}"
ARBITER="$bin/arbiter"
ARBITERD="$bin/arbiterd"
work="$root/target/demo"
library_file="$root/daemon/functions/psi-count.rhai"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok() { printf '\033[32mOK\033[0m %s\n' "$*"; }
fail() { printf '\033[31mFAILED\033[0m %s\n' "$*" >&2; exit 1; }

[ -x "$ARBITER" ] && [ -x "$ARBITERD" ] || fail "build first: cargo build -p arbiter-daemon -p arbiter-client"
rm -rf "$work"
mkdir -p "$work"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
server="https://127.0.0.1:$port"

step "Identities: an operator and two parties, each a key and a self-signed certificate"
for who in operator alice bob; do
  id="$("$ARBITER" identity new --out "$work/$who/identity" --name "$who")"
  eval "${who}_id=$id"
  cat > "$work/$who/config.toml" <<TOML
server = "$server"
cert = "identity/cert.pem"
key = "identity/key.pem"
policy = "appraisal.toml"
TOML
  echo "$who: $id"
done
as() { local who="$1"; shift; ARBITER_STATE="$work/$who" "$ARBITER" "$@"; }

step "The appliance: arbiterd on its own private swtpm (EK certificates from a local CA)"
extra=()
if [ "$(id -u)" != 0 ] && [ "$(ulimit -l)" != unlimited ]; then
  echo "note: the memlock limit is $(ulimit -l) KiB; this development run allows unlocked memory"
  extra=(--set danger.allow_unlocked_memory=true)
fi
TSS2_LOG=all+NONE "$ARBITERD" run --dev-swtpm --state-dir "$work/daemon" --listen "127.0.0.1:$port" \
  --set "access.operators=[\"$operator_id\"]" "${extra[@]}" > "$work/daemon.log" 2>&1 &
daemon_pid=$!
trap 'kill $daemon_pid 2>/dev/null || true; wait $daemon_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  as operator health > /dev/null 2>&1 && break
  kill -0 $daemon_pid 2>/dev/null || { cat "$work/daemon.log"; fail "arbiterd exited"; }
  sleep 0.1
done
as operator health || { cat "$work/daemon.log"; fail "arbiterd does not answer"; }
ok "arbiterd serves $server (log: $work/daemon.log)"

step "The parties find the library function psi-count in the daemon's list and check it"
as alice functions
fn_json="$(as alice functions --json)"
read -r fn_id fn_listed < <(echo "$fn_json" | python3 -c '
import json, sys
f = [f for f in json.load(sys.stdin) if f["name"] == "psi-count" and f["library"]]
assert len(f) == 1, "psi-count is not listed as a library function"
print(f[0]["id"], f[0]["sha256"])')
fn_sha="$(sha256sum "$library_file" | cut -d' ' -f1)"
[ "$fn_listed" = "$fn_sha" ] || fail "the listed measurement $fn_listed is not sha256sum of $library_file ($fn_sha)"
as bob function show "$fn_id"
ok "psi-count ($fn_id): its measurement is sha256sum of daemon/functions/psi-count.rhai: $fn_sha"

step "Alice and Bob enrol the appliance: EK chain to the swtpm CA, credential activation, AK pinned"
cas=("$work/daemon/swtpm/ca/swtpm-localca-rootca-cert.pem" "$work/daemon/swtpm/ca/issuercert.pem")
as alice enroll --ek-ca "${cas[@]}"
as bob enroll --ek-ca "${cas[@]}"
ok "AK pinned in each party's trust store"

step "Each party writes its appraisal policy"
zero="0000000000000000000000000000000000000000000000000000000000000000"
echo "NOTE: this demo ALLOWS AN UNPINNED PLATFORM (allow_unpinned_platform = true): swtpm has no"
echo "      firmware, so every platform PCR is zero and there are no reference values to pin."
echo "      Every trusted verdict below says so with a WARNING. A real appliance's policy pins"
echo "      its firmware, boot loader, Secure Boot state and kernel (arbiter policy capture)."
for who in alice bob; do
  cat > "$work/$who/appraisal.toml" <<TOML
# A software TPM with no firmware: every platform PCR is zero, and an all-zero pin is no
# pin, so this development policy allows an unpinned platform explicitly. A real
# appliance's policy pins its measured firmware, boot loader, Secure Boot state and kernel.
allow_unpinned_platform = true
platform_pcrs = [0, 2, 4, 7, 9]
functions = ["$fn_sha"]

[pcrs]
0 = "$zero"
2 = "$zero"
4 = "$zero"
7 = "$zero"
9 = "$zero"
TOML
done
out="$(as alice attest)"
echo "$out"
echo "$out" | grep -q "WARNING: trusted WITHOUT reference values" || fail "an unpinned platform was trusted silently"
ok "Alice's attestation is trusted (unpinned platform: swtpm has no firmware)"

step "The operator creates a two-party instance"
cat > "$work/manifest.json" <<JSON
{
  "name": "demo: how many customers Alice and Bob have in common",
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
inst="$(as operator instance create "$work/manifest.json" --quiet)"
echo "instance $inst"
as bob attest --instance "$inst"
ok "Bob attested the instance: its key, its manifest and its function"

step "A submission that expects another function is refused before anything is sent"
if as bob submit --instance "$inst" --slot b --value '"x"' --expect-function "$zero" 2> "$work/refused.txt"; then
  fail "a wrong --expect-function was accepted"
fi
cat "$work/refused.txt"
ok "refused"

step "Alice and Bob each generate a customer list: 10,000 e-mail addresses, a known overlap"
# Deterministic: the same lists on every run. Customers 0..9999 are Alice's; Bob's are
# 7,655..17,654, so 2,345 are shared; each list is shuffled with a fixed seed.
overlap="$(python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
def customers(lo, hi, seed):
    people = [f"customer{i:05d}@example.com" for i in range(lo, hi)]
    random.Random(seed).shuffle(people)
    return people
alice, bob = customers(0, 10000, 1), customers(7655, 17655, 2)
json.dump(alice, open(f"{work}/alice/customers.json", "w"))
json.dump(bob, open(f"{work}/bob/customers.json", "w"))
print(len(set(alice) & set(bob)))
PY
)"
echo "alice: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/alice/customers.json") addresses; bob: $(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/bob/customers.json") addresses; shared (known to the script only): $overlap"

step "Alice and Bob submit their lists, HPKE-encrypted to the attested instance key"
as alice submit --instance "$inst" --slot a --file "$work/alice/customers.json" --expect-function "$fn_sha"
as bob submit --instance "$inst" --slot b --file "$work/bob/customers.json" --expect-function "$fn_sha"
ok "both receipts checked"

step "Both read the signed result and verify it"
as alice result "$inst" --wait
out="$(as bob result "$inst" --wait --json)"
echo "$out" | head -8
got="$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["statement"]["output"]["intersection_size"])')"
[ "$got" = "$overlap" ] || fail "the signed intersection size is $got, not the known overlap $overlap"
ok "the signed result says $got customers in common: the known overlap, and nothing about which"

step "Alice destroys the instance; Bob verifies the certificate of destruction"
as alice destroy "$inst"
as bob verify-destruction "$inst"
ok "the inputs are destroyed and the destruction is in the quoted measurement log"

step "Bob writes an offline bundle and checks it with no network"
as bob bundle "$inst" --out "$work/bundle.json"
kill $daemon_pid; wait $daemon_pid 2>/dev/null || true
as bob verify-bundle "$work/bundle.json" --ek-ca "${cas[@]}"
ok "the bundle verifies offline (the daemon is stopped)"

step "Every check passed"
