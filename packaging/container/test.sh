#!/usr/bin/env bash
# The container test (`make container-test`): Arbiter's main job between containers over
# the compose network, not loopback. Builds the images (build.sh), starts compose.yaml,
# then, with the `arbiter` CLI inside the party containers (the flow of client/demo/demo.sh):
# identities, the operator's function and instance, enrol (EK chain to the swtpm's CA),
# attest, submit both inputs, read and verify the signed result, destroy, verify the
# certificate of destruction. Then restarts the daemon container (state on its volume, the
# TPM and PCR 23 untouched) and attests again. Also checks that no party reaches the swtpm.
# Prints how long each step took; on failure prints the containers' logs and exits 1.
# Everything is removed at the end (`down -v`).
#
# Usage: packaging/container/test.sh [TARGET_DIR]   (release builds of arbiterd and arbiter)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
demo="$root/client/demo"
expected_output="579c08ee78ce5bce40f273f7c35dfdf2f0615e026991c840ea1e16b367fc0f63"
zero="0000000000000000000000000000000000000000000000000000000000000000"

if docker compose version > /dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose > /dev/null; then
  compose=(docker-compose)
else
  echo "container-test: neither \`docker compose\` nor docker-compose is installed" >&2
  exit 1
fi
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-arbitertest}"
compose+=(-f "$here/compose.yaml")
work="$(mktemp -d)"

t0=$SECONDS
last=$SECONDS
current=""
timings=()
if [ -t 1 ]; then bold=$'\033[1m' green=$'\033[32m' red=$'\033[31m' off=$'\033[0m'; else bold="" green="" red="" off=""; fi
step() {
  [ -z "$current" ] || timings+=("$(printf '%4d s  %s' $((SECONDS - last)) "$current")")
  current="$*"
  last=$SECONDS
  printf '\n%s== %s%s\n' "$bold" "$*" "$off"
}
ok() { printf '%sOK%s %s\n' "$green" "$off" "$*"; }
fail() { printf '%sFAILED%s %s\n' "$red" "$off" "$*" >&2; exit 1; }

finish() {
  local status=$?
  if [ "$status" != 0 ]; then
    printf '\n%s== container-test failed (exit %s); the containers logs:%s\n' "$red" "$status" "$off" >&2
    "${compose[@]}" ps >&2 || true
    "${compose[@]}" logs --no-color --tail 200 >&2 || true
  fi
  if [ -n "$current" ]; then timings+=("$(printf '%4d s  %s' $((SECONDS - last)) "$current")"); fi
  last=$SECONDS
  "${compose[@]}" down -v --remove-orphans > /dev/null 2>&1 || true
  rm -rf "$work"
  timings+=("$(printf '%4d s  %s' $((SECONDS - last)) "Tear down (down -v)")")
  printf '\n== timings\n'
  printf '%s\n' "${timings[@]}"
  printf '%4d s  total\n' $((SECONDS - t0))
  [ "$status" = 0 ] && printf '%scontainer-test: every check passed%s\n' "$green" "$off"
  exit "$status"
}
trap finish EXIT

# Runs a command (the arbiter CLI, or a shell) in a service's container: `docker exec` on
# the container compose started, which is much quicker than `compose exec` for each call.
declare -A container
id_of() { [ -n "${container[$1]:-}" ] || container[$1]="$("${compose[@]}" ps -q "$1")"; }
cx() { local who="$1"; shift; id_of "$who"; docker exec "${container[$who]}" "$@"; }
# Writes stdin to a file in a container (read-only root: only the state volume is writable).
put() { id_of "$1"; docker exec -i "${container[$1]}" sh -c 'cat > "$1"' put "$2"; }

step "Images: base (cached by hash), swtpm, daemon, party"
"$here/build.sh" "$@"

step "Start the swtpm (provisions its state on first start) and the CLI-only containers"
"${compose[@]}" down -v --remove-orphans > /dev/null 2>&1 || true
"${compose[@]}" up -d swtpm party-a party-b operator
for who in swtpm party-a party-b operator; do id_of "$who"; done

step "Identities: an operator and two parties, each a key and a self-signed certificate"
declare -A id
for who in operator party-a party-b; do
  name="${who#party-}"
  id[$who]="$(cx "$who" arbiter identity new --out /home/party/state/identity --name "$name" | tr -d '\r')"
  put "$who" /home/party/state/config.toml <<TOML
server = "https://daemon:8443"
cert = "identity/cert.pem"
key = "identity/key.pem"
policy = "appraisal.toml"
TOML
  echo "$who: ${id[$who]}"
done

step "The daemon, on the swtpm over the internal network; the operator is allowed"
ARBITER_OPERATORS="[\"${id[operator]}\"]" "${compose[@]}" up -d daemon
id_of daemon
wait_healthy() {
  for _ in $(seq 1 120); do
    cx operator arbiter health > /dev/null 2>&1 && return 0
    sleep 0.5
  done
  cx operator arbiter health || fail "arbiterd does not answer on https://daemon:8443"
}
wait_healthy
cx operator arbiter health
daemon_log() { "${compose[@]}" logs --no-color daemon; }
grep -q "memory_locked=true" <<< "$(daemon_log)" \
  || fail "arbiterd did not lock its memory (the image's CAP_IPC_LOCK file capability)"
ok "arbiterd answers the parties at https://daemon:8443, its memory locked"

step "Hardening: every container runs as a non-root user on a read-only root filesystem"
for who in swtpm daemon party-a party-b operator; do
  cx "$who" sh -c '[ "$(id -u)" != 0 ] && ! touch /usr/probe 2> /dev/null' \
    || fail "$who runs as root or can write its root filesystem"
  echo "$who: $(cx "$who" id -un), read-only /"
done
ok "non-root, read-only"

step "Isolation: the parties cannot reach the TPM"
# Neither by name (not on its network, so not resolved) nor by address (the internal
# network's bridge is not routed to).
swtpm_ip="$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "${container[swtpm]}")"
echo "swtpm: $swtpm_ip (network tpm)"
for who in party-a party-b operator; do
  for target in swtpm "$swtpm_ip"; do
    if cx "$who" timeout 2 bash -c "exec 3<>/dev/tcp/$target/2321" 2> /dev/null; then
      fail "$who reaches $target:2321: anyone who can talk to the TPM can reset PCR 23"
    fi
  done
done
cx daemon bash -c 'exec 3<>/dev/tcp/swtpm/2321' || fail "the daemon does not reach swtpm:2321"
ok "swtpm:2321 is reachable from the daemon only"

step "The operator registers the function both parties reviewed"
fn_sha="$(sha256sum "$demo/concat_sha256.rhai" | cut -d' ' -f1)"
put operator /home/party/state/concat_sha256.rhai < "$demo/concat_sha256.rhai"
out="$(cx operator arbiter function register /home/party/state/concat_sha256.rhai --name concat_sha256)"
echo "$out"
fn_id="$(echo "$out" | awk '/registered function/ {print $3}')"
cx party-a arbiter function show "$fn_id" | sed -n 1,3p
ok "function $fn_sha"

step "Both parties enrol the appliance: EK chain to the swtpm's CA, AK pinned"
for f in swtpm-localca-rootca-cert.pem issuercert.pem; do
  cx swtpm cat "/var/lib/swtpm/ca/$f" > "$work/$f"
done
cas=(/home/party/state/ek-ca-root.pem /home/party/state/ek-ca-issuer.pem)
for who in party-a party-b; do
  put "$who" "${cas[0]}" < "$work/swtpm-localca-rootca-cert.pem"
  put "$who" "${cas[1]}" < "$work/issuercert.pem"
  cx "$who" arbiter enroll --ek-ca "${cas[@]}"
done
ok "AK pinned in each party's trust store"

step "Each party writes its appraisal policy; party A attests the appliance"
for who in party-a party-b; do
  put "$who" /home/party/state/appraisal.toml <<TOML
# swtpm has no firmware: every platform PCR is zero, so this test policy allows an
# unpinned platform explicitly (a real appliance's policy pins its boot chain).
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
out="$(cx party-a arbiter attest)"
echo "$out"
grep -q "WARNING: trusted WITHOUT reference values" <<< "$out" || fail "an unpinned platform was trusted silently"
ok "party A's attestation is trusted (unpinned platform: swtpm has no firmware)"

step "The operator creates a two-party instance; party B attests it"
put operator /home/party/state/manifest.json <<JSON
{
  "name": "container test: sha256 of A's and B's strings",
  "function": { "sha256": "$fn_sha" },
  "parties": [ { "name": "alice", "identity": "${id[party-a]}" }, { "name": "bob", "identity": "${id[party-b]}" } ],
  "slots": {
    "a": { "providers": ["${id[party-a]}"], "provide": "provide_once" },
    "b": { "providers": ["${id[party-b]}"], "provide": "provide_once" }
  },
  "trigger": { "kind": "all" },
  "readers": { "${id[party-a]}": "result", "${id[party-b]}": "result" },
  "destruction": { "policy": "on_request", "destroyers": ["${id[party-a]}"] }
}
JSON
inst="$(cx operator arbiter instance create /home/party/state/manifest.json --quiet | tr -d '\r')"
echo "instance $inst"
cx party-b arbiter attest --instance "$inst"
ok "party B attested the instance: its key, its manifest and its function"

step "A submission that expects another function is refused before anything is sent"
if cx party-b arbiter submit --instance "$inst" --slot b --value '"x"' --expect-function "$zero"; then
  fail "a wrong --expect-function was accepted"
fi
ok "refused"

step "Both parties submit their inputs, HPKE-encrypted to the attested instance key"
cx party-a arbiter submit --instance "$inst" --slot a --value '"Now is the time"' --expect-function "$fn_sha"
cx party-b arbiter submit --instance "$inst" --slot b --value '"for all good men"' --expect-function "$fn_sha"
ok "both receipts checked"

step "Both read the signed result and verify it"
cx party-a arbiter result "$inst" --wait
out="$(cx party-b arbiter result "$inst" --wait --json)"
sed -n 1,5p <<< "$out"
grep -q "\"output\": \"$expected_output\"" <<< "$out" || fail "the output is not sha256(\"Now is the timefor all good men\")"
ok "the output is $expected_output"

step "Party A destroys the instance; party B verifies the certificate of destruction"
cx party-a arbiter destroy "$inst"
cx party-b arbiter verify-destruction "$inst"
ok "the inputs are destroyed and the destruction is in the quoted measurement log"

step "Restart the daemon container (state on its volume; the TPM keeps running)"
"${compose[@]}" restart daemon
echo "restarted in $((SECONDS - last)) s; waiting for it to serve"
wait_healthy
[ "$(grep -c "serving on https://" <<< "$(daemon_log)")" = 2 ] \
  || fail "the daemon did not start twice"
ok "arbiterd is back"

step "Attest again after the restart; the destruction still verifies"
out="$(cx party-a arbiter attest)"
echo "$out"
grep -q "^TRUSTED" <<< "$out" || fail "no trusted verdict after the restart"
grep -q "started 2 time(s) in this log generation" <<< "$out" \
  || fail "the restart is not a second daemon_started in the same log generation"
cx party-b arbiter verify-destruction "$inst"
ok "the restarted daemon attests with the same pinned AK, a second start in the same log generation; its state survived"
