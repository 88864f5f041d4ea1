#!/usr/bin/env bash
# The Debian package's smoke test: install the .deb with dpkg in a container whose PID 1 is
# systemd, run arbiterd from the packaged unit against a software TPM, and go through the
# package's life: install, start, a live instance, stop, upgrade, remove, purge.
#
#   packaging/deb/smoke-test.sh DEB UPGRADE_DEB     (`make package-test` builds both)
#
# DEB and UPGRADE_DEB hold the same binaries under two versions (0.1.0-1, then a higher
# revision): the upgrade exercises the maintainer scripts' upgrade path (prerm upgrade
# stops the daemon, postinst starts it again) and dpkg's conffile handling, not a change of
# code. Checks, each printed with its time:
#   1. files, owners and modes; the conffile; the user arbiter; the unit enabled, not started
#   2. systemctl start: READY=1 (Type=notify), the watchdog pinged, no restart
#   3. journalctl -u arbiterd -o json: the daemon's entries, their structured fields
#   4. a live instance made with the `arbiter` CLI (enrol, attest, create, one input)
#   5. systemctl stop: exit status 0
#   6. upgrade while running: same store, the instance still open, the edited config kept
#   7. dpkg -r: the state and the configuration stay
#   8. dpkg --purge with a live instance: refused, the state untouched
#   9. reinstall, destroy the instance (certificate verified), purge: state and config gone;
#      the user and the TPM's sealing NV index and persistent keys stay
#  10. reinstall on that TPM: the daemon refuses to start (PCR 23 holds the old log)
# The container runs systemd as PID 1 with every capability but CAP_SYS_RESOURCE (see the
# docker run below) and three test-only deviations from the packaged unit (see
# override_unit). Removed at exit; ARBITER_SMOKE_KEEP=1 keeps it for inspection.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
deb1="$(realpath "${1:?usage: smoke-test.sh DEB UPGRADE_DEB}")"
deb2="$(realpath "${2:?usage: smoke-test.sh DEB UPGRADE_DEB}")"
for f in "$deb1" "$deb2"; do
  [ -f "$f" ] || { echo "smoke-test.sh: $f is not a file" >&2; exit 1; }
done

started=$SECONDS
step_start=$SECONDS
step_name=""
timings=()
finish_step() {
  if [ -n "$step_name" ]; then
    timings+=("$(printf '%4ss  %s' "$((SECONDS - step_start))" "$step_name")")
  fi
}
step() {
  finish_step
  step_name="$*"
  step_start=$SECONDS
  printf '\n\033[1m== %s\033[0m\n' "$*"
}
ok() { printf '\033[32mOK\033[0m %s\n' "$*"; }
fail() {
  printf '\033[31mFAILED\033[0m %s\n' "$*" >&2
  if [ -n "${c:-}" ]; then
    echo "--- systemctl status arbiterd, journal (last 25 lines):" >&2
    docker exec "$c" systemctl --no-pager status arbiterd >&2 || true
    docker exec "$c" journalctl --no-pager -n 25 >&2 || true
  fi
  exit 1
}

c=""
cleanup() {
  if [ -n "$c" ] && [ "${ARBITER_SMOKE_KEEP:-0}" != 1 ]; then
    docker rm -f "$c" > /dev/null 2>&1 || true
  elif [ -n "$c" ]; then
    echo "kept the container $c (docker rm -f $c)"
  fi
}
trap 'cleanup; [ -z "$c" ] || rm -f /tmp/$c-*' EXIT

# Runs a shell command in the container; `in_c -i` passes stdin.
in_c() {
  if [ "$1" = -i ]; then shift; docker exec -i "$c" bash -c "$*"; else docker exec "$c" bash -c "$*"; fi
}
show() { in_c "systemctl show -p $1 --value arbiterd"; }

step "The test image: the base image, systemd, swtpm, tpm2-tools, the run-time libraries"
base="$("$root/packaging/container/base-image.sh")"
base_id="$(docker image inspect -f '{{.Id}}' "$base")"
inputs_hash="$( (echo "$base_id"; cat "$here/Containerfile" "$here/swtpm-provision.sh" \
  "$here/arbiter-test-swtpm.service") | sha256sum | cut -c1-12)"
image="arbiter-deb-test:$inputs_hash"
if docker image inspect "$image" > /dev/null 2>&1; then
  echo "$image is present (cached)"
else
  docker build -q -f "$here/Containerfile" --build-arg "BASE=$base" -t "$image" "$here" > /dev/null
  # Earlier test images (other inputs) are not used again.
  docker images --format '{{.Repository}}:{{.Tag}}' arbiter-deb-test | grep -vx "$image" \
    | xargs -r docker rmi > /dev/null 2>&1 || true
fi
ok "$image"

step "Start the container, systemd as PID 1"
c="arbiter-deb-smoke-$$"
# Not --privileged: this machine's engine lacks CAP_SYS_RESOURCE, which --privileged asks
# for (runc: "unable to apply caps"). Every other capability, no seccomp filter (the unit's
# sandboxing makes namespaces), the host's cgroup v1 tree writable for systemd. /sys stays
# read-only, which makes systemd treat device units as unsupported.
docker run -d --name "$c" --cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined \
  --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
  -v "$deb1:/debs/first.deb:ro" -v "$deb2:/debs/upgrade.deb:ro" \
  -v "$root/client/demo/concat_sha256.rhai:/root/concat_sha256.rhai:ro" \
  "$image" > /dev/null
for _ in $(seq 1 100); do
  state="$(docker exec "$c" systemctl is-system-running 2> /dev/null || true)"
  case "$state" in running | degraded) break ;; esac
  sleep 0.2
done
[ "$state" = running ] || [ "$state" = degraded ] || fail "systemd did not come up: '$state'"
in_c "systemctl --failed --no-legend --plain" | sed 's/^/  failed unit (not ours): /' || true
in_c "systemctl start arbiter-test-swtpm"
ok "systemd is $state; swtpm serves 127.0.0.1:2321"

step "dpkg -i the package: files, owners, modes, the conffile, the user, the unit"
in_c "dpkg -i /debs/first.deb"
version1="$(in_c "dpkg-query -W -f='\${Version}' arbiter")"
expect_stat() { # path owner:group mode
  local got
  got="$(in_c "stat -c '%U:%G %a' $1")" || fail "$1 is missing"
  [ "$got" = "$2 $3" ] || fail "$1 is $got, expected $2 $3"
  echo "  $1 $got"
}
expect_stat /usr/bin/arbiterd root:root 755
expect_stat /usr/bin/arbiter root:root 755
expect_stat /usr/lib/systemd/system/arbiterd.service root:root 644
expect_stat /usr/lib/sysusers.d/arbiter.conf root:root 644
expect_stat /usr/lib/tmpfiles.d/arbiter.conf root:root 644
expect_stat /usr/lib/udev/rules.d/60-arbiter-tpm.rules root:root 644
expect_stat /usr/share/doc/arbiter/README.md root:root 644
expect_stat /usr/share/doc/arbiter/copyright root:root 644
expect_stat /etc/arbiter root:arbiter 750
expect_stat /etc/arbiter/arbiterd.toml root:arbiter 640
conffiles="$(in_c "dpkg-query -W -f='\${Conffiles}\n' arbiter")"
grep -q '/etc/arbiter/arbiterd.toml ' <<< "$conffiles" \
  || fail "arbiterd.toml is not a conffile"
in_c -i "cmp /usr/lib/systemd/system/arbiterd.service" < "$root/packaging/arbiterd.service" \
  || fail "the installed unit is not packaging/arbiterd.service"
ident="$(in_c "getent passwd arbiter")" || fail "no user arbiter"
echo "  $ident"
uid="$(echo "$ident" | cut -d: -f3)"
[ "$uid" -lt 1000 ] || fail "arbiter is not a system user (uid $uid)"
[ "$(in_c "id -nG arbiter")" = arbiter ] || fail "arbiter has supplementary groups: $(in_c 'id -nG arbiter')"
[ "$(in_c "systemctl is-enabled arbiterd")" = enabled ] || fail "the unit is not enabled"
[ "$(show ActiveState)" = inactive ] || fail "the unit was started at installation"
in_c "systemd-analyze verify arbiterd.service" 2>&1 | grep -v "^$" | sed 's/^/  verify: /' || true
ok "$version1 installed; user arbiter ($uid), unit enabled and not started"

step "Configure: the swtpm TCTI and an operator; a drop-in for the test only"
in_c "mkdir -p /root/parties && cd /root/parties && for who in operator alice bob; do
  id=\$(arbiter identity new --out \$who/identity --name \$who)
  echo \$id > \$who/id
  printf 'server = \"https://127.0.0.1:8443\"\ncert = \"identity/cert.pem\"\nkey = \"identity/key.pem\"\npolicy = \"appraisal.toml\"\n' > \$who/config.toml
done"
operator_id="$(in_c "cat /root/parties/operator/id")"
# The administrator's edits of the conffile; dpkg keeps them across the upgrade below.
configure() {
  in_c "sed -i -e 's|^tcti = .*|tcti = \"swtpm:host=127.0.0.1,port=2321\"|' \
    -e 's|^operators = \\[\\]|operators = [\"$operator_id\"]|' /etc/arbiter/arbiterd.toml"
}
configure
in_c "grep -E '^(tcti|operators) =' /etc/arbiter/arbiterd.toml" | sed 's/^/  /'
# The container's deviations from the packaged unit, each for a reason of the container:
# - No /dev/tpmrm0 and no udev: systemd refuses to start dev-tpmrm0.device ("unsupported"
#   with /sys read-only), so BindsTo=dev-tpmrm0.device fails the start. A drop-in cannot
#   remove a dependency: override_unit copies the packaged unit to /etc without it (and
#   checks that nothing else differs); the drop-in orders it after the test's swtpm.
# - The engine's memlock limit is 8 MiB and cannot be raised (no CAP_SYS_RESOURCE), so
#   LimitMEMLOCK=infinity is clamped: CAP_IPC_LOCK lets the daemon lock its memory anyway
#   (it still refuses to start unlocked).
# - A 5-second watchdog (30 s shipped), so that the test sees several pings in seconds.
override_unit() {
  in_c "sed -e '/^BindsTo=dev-tpmrm0.device\$/d' -e 's/^After=dev-tpmrm0.device /After=/' \
    /usr/lib/systemd/system/arbiterd.service > /etc/systemd/system/arbiterd.service"
  local d
  d="$(in_c "diff /usr/lib/systemd/system/arbiterd.service /etc/systemd/system/arbiterd.service" || true)"
  [ "$(echo "$d" | grep -c '^[<>]')" = 3 ] || fail "the unit override changes more than the TPM device dependency: $d"
  in_c "systemctl daemon-reload"
}
override_unit
in_c -i "mkdir -p /etc/systemd/system/arbiterd.service.d && cat > /etc/systemd/system/arbiterd.service.d/smoke-test.conf" <<'EOF'
[Unit]
Wants=arbiter-test-swtpm.service
After=arbiter-test-swtpm.service
[Service]
WatchdogSec=5
CapabilityBoundingSet=CAP_IPC_LOCK
AmbientCapabilities=CAP_IPC_LOCK
EOF
in_c "systemctl daemon-reload"
setpriv_check="$(in_c "setpriv --reuid=arbiter --regid=arbiter --clear-groups -- arbiterd check-config" 2>&1)" \
  || fail "arbiterd check-config as arbiter: $setpriv_check"
ok "arbiterd check-config passes as the user arbiter"

step "systemctl start arbiterd: READY=1, the watchdog"
t=$SECONDS
in_c "systemctl start arbiterd" || fail "systemctl start arbiterd"
echo "  systemctl start returned after $((SECONDS - t)) s (Type=notify: only after READY=1)"
in_c "systemctl show -p ActiveState,SubState,StatusText,WatchdogUSec,NRestarts,MainPID arbiterd" | sed 's/^/  /'
[ "$(show ActiveState)" = active ] || fail "not active"
[ "$(show SubState)" = running ] || fail "not running"
pid="$(show MainPID)"
wd1="$(show WatchdogTimestampMonotonic)"
sleep 11
wd2="$(show WatchdogTimestampMonotonic)"
[ "$(show ActiveState)" = active ] && [ "$(show NRestarts)" = 0 ] && [ "$(show MainPID)" = "$pid" ] \
  || fail "the daemon did not survive two watchdog intervals"
[ "$wd2" -gt "$wd1" ] || fail "no watchdog ping in 11 s (WatchdogTimestampMonotonic $wd1 -> $wd2)"
ok "active (running), pid $pid, the watchdog pinged (timestamp $wd1 -> $wd2 µs), 0 restarts after 11 s"

step "journalctl -u arbiterd -o json: structured entries"
in_c "journalctl -u arbiterd -o json --no-pager" > "/tmp/$c-journal.json"
python3 - "/tmp/$c-journal.json" <<'EOF' || fail "the journal check"
import json, sys
entries = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ours = [e for e in entries if e.get("_SYSTEMD_UNIT") == "arbiterd.service" and "_PID" in e
        and e.get("_COMM") == "arbiterd"]
assert ours, f"no entry from the arbiterd process among {len(entries)}"
assert all("MESSAGE" in e for e in ours)
# Fields of the journal itself and of the transport; any other is the daemon's own.
base = {"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "SYSLOG_PID",
        "SYSLOG_TIMESTAMP", "CODE_FILE", "CODE_LINE", "CODE_FUNC", "INVOCATION_ID",
        "SYSLOG_RAW"}
own = sorted({k for e in ours for k in e if not k.startswith("_") and k not in base})
print(f"  {len(ours)} entries from arbiterd (of {len(entries)} for the unit)")
print(f"  first: {ours[0]['MESSAGE'][:110]!r}")
print("  structured fields beyond MESSAGE/PRIORITY:", ", ".join(own))
# tracing-journald writes the daemon's own fields upper-cased with the prefix F_.
events = {e.get("F_EVENT") for e in ours} - {None}
assert "serving" in events, f"no entry with F_EVENT=serving; events seen: {sorted(events)}"
EOF
rm -f "/tmp/$c-journal.json"
ok "the journal has the daemon's entries"

step "A live instance with the arbiter CLI: enrol, attest, create, one input"
cas="/var/lib/arbiter-test-swtpm/ca/swtpm-localca-rootca-cert.pem /var/lib/arbiter-test-swtpm/ca/issuercert.pem"
fn_sha="$(sha256sum "$root/client/demo/concat_sha256.rhai" | cut -d' ' -f1)"
zero="0000000000000000000000000000000000000000000000000000000000000000"
in_c "cd /root/parties && export ARBITER_STATE=/root/parties/operator &&
  arbiter health && arbiter function register /root/concat_sha256.rhai --name concat_sha256" | sed 's/^/  /'
for who in alice bob; do
  in_c -i "cat > /root/parties/$who/appraisal.toml" <<EOF
# swtpm has no firmware: every platform PCR is zero (development policy).
allow_unpinned_platform = true
platform_pcrs = [0, 2, 4, 7, 9]
functions = ["$fn_sha"]
[pcrs]
0 = "$zero"
2 = "$zero"
4 = "$zero"
7 = "$zero"
9 = "$zero"
EOF
  in_c "ARBITER_STATE=/root/parties/$who arbiter enroll --ek-ca $cas" > /dev/null || fail "$who enroll"
done
alice_id="$(in_c "cat /root/parties/alice/id")"
bob_id="$(in_c "cat /root/parties/bob/id")"
in_c -i "cat > /root/parties/manifest.json" <<EOF
{
  "name": "package smoke test",
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
EOF
inst="$(in_c "ARBITER_STATE=/root/parties/operator arbiter instance create /root/parties/manifest.json --quiet")" \
  || fail "instance create"
in_c "ARBITER_STATE=/root/parties/alice arbiter submit --instance $inst --slot a \
  --value '\"Now is the time\"' --expect-function $fn_sha" | sed 's/^/  /' || fail "submit"
in_c "ARBITER_STATE=/root/parties/operator arbiter instance show $inst" > "/tmp/$c-inst1" || fail "instance show"
head -12 "/tmp/$c-inst1" | sed 's/^/  /'
live="$(in_c "setpriv --reuid=arbiter --regid=arbiter --clear-groups -- arbiterd live-instances" 2> /dev/null)"
echo "  arbiterd live-instances (the daemon running): $live"
grep -q "^$inst open " <<< "$live" || fail "live-instances does not list $inst as open"
ok "instance $inst is open with one of two inputs"

step "systemctl stop arbiterd: a clean exit"
t=$SECONDS
in_c "systemctl stop arbiterd"
in_c "systemctl show -p ActiveState,Result,ExecMainCode,ExecMainStatus arbiterd" | sed 's/^/  /'
[ "$(show ExecMainStatus)" = 0 ] && [ "$(show Result)" = success ] && [ "$(show ActiveState)" = inactive ] \
  || fail "arbiterd did not stop cleanly"
ok "stopped in $((SECONDS - t)) s, exit status 0"

step "Upgrade while running: dpkg -i of a newer build"
in_c "systemctl start arbiterd"
pid="$(show MainPID)"
db_before="$(in_c "stat -c '%i %U:%G %a' /var/lib/arbiter/arbiter.db")"
in_c "dpkg -i /debs/upgrade.deb" | sed 's/^/  /'
override_unit
version2="$(in_c "dpkg-query -W -f='\${Version}' arbiter")"
[ "$version2" != "$version1" ] || fail "the version did not change ($version1)"
in_c "dpkg --compare-versions $version2 gt $version1" || fail "$version2 is not newer than $version1"
[ "$(show ActiveState)" = active ] || fail "arbiterd is not running after the upgrade"
[ "$(show MainPID)" != "$pid" ] || fail "arbiterd was not restarted by the upgrade (pid $pid)"
in_c "grep -q '^tcti = \"swtpm:' /etc/arbiter/arbiterd.toml" || fail "the edited configuration was replaced"
expect_stat /etc/arbiter/arbiterd.toml root:arbiter 640
[ "$(in_c "stat -c '%i %U:%G %a' /var/lib/arbiter/arbiter.db")" = "$db_before" ] || fail "the store changed"
in_c "ARBITER_STATE=/root/parties/operator arbiter instance show $inst" > "/tmp/$c-inst2" || fail "instance show after the upgrade"
diff "/tmp/$c-inst1" "/tmp/$c-inst2" || fail "the instance changed across the upgrade"
in_c "ARBITER_STATE=/root/parties/bob arbiter attest --instance $inst" > /dev/null || fail "bob attest after the upgrade"
ok "$version1 -> $version2: restarted (pid $pid -> $(show MainPID)), same store, instance $inst unchanged and attested, config kept"

step "dpkg -r: the state and the configuration stay"
in_c "dpkg -r arbiter" | sed 's/^/  /'
in_c "! test -e /usr/bin/arbiterd" || fail "arbiterd still installed"
in_c "test -s /var/lib/arbiter/arbiter.db && test -d /var/lib/arbiter/measurements" || fail "the state is gone"
in_c "test -f /etc/arbiter/arbiterd.toml" || fail "the configuration is gone"
[ "$(in_c "dpkg-query -W -f='\${db:Status-Status}' arbiter")" = config-files ] || fail "not in config-files"
in_c "cat /var/lib/arbiter.dpkg-live-instances" | sed 's/^/  /'
ok "removed; /var/lib/arbiter and /etc/arbiter kept; 1 live instance recorded"

step "dpkg --purge with a live instance: refused"
if in_c "dpkg --purge arbiter" > "/tmp/$c-purge" 2>&1; then
  cat "/tmp/$c-purge"; fail "the purge was not refused"
fi
sed 's/^/  /' "/tmp/$c-purge"
in_c "test -s /var/lib/arbiter/arbiter.db && test -d /var/lib/arbiter/measurements" \
  || fail "the refused purge deleted the state"
[ "$(in_c "dpkg-query -W -f='\${db:Status-Status}' arbiter")" = config-files ] || fail "not in config-files"
# dpkg deletes conffiles before postrm purge runs; prerm kept a copy at the removal.
in_c "! test -e /etc/arbiter/arbiterd.toml && grep -q '^tcti = \"swtpm:' /var/lib/arbiter.dpkg-arbiterd.toml" \
  || fail "the configuration's copy made at the removal is missing"
ok "refused; the state untouched; dpkg took the conffile, its copy is in /var/lib/arbiter.dpkg-arbiterd.toml"

step "Reinstall, destroy the instance with its certificate, purge"
in_c "dpkg -i /debs/upgrade.deb" | sed 's/^/  /'
in_c "cp -p /var/lib/arbiter.dpkg-arbiterd.toml /etc/arbiter/arbiterd.toml"
in_c "systemctl start arbiterd"
in_c "ARBITER_STATE=/root/parties/alice arbiter destroy $inst" | sed 's/^/  /' || fail "destroy"
in_c "ARBITER_STATE=/root/parties/bob arbiter verify-destruction $inst" | sed 's/^/  /' || fail "verify-destruction"
in_c "dpkg --purge arbiter" 2>&1 | sed 's/^/  /'
[ "$(in_c "dpkg-query -W -f='\${db:Status-Status}' arbiter 2> /dev/null" || true)" != config-files ] || fail "still config-files"
in_c "! test -e /var/lib/arbiter && ! test -e /etc/arbiter && ! test -e /var/lib/arbiter.dpkg-live-instances \
  && ! test -e /var/lib/arbiter.dpkg-arbiterd.toml" \
  || fail "purge left the state or the configuration"
in_c "getent passwd arbiter > /dev/null" || fail "the user arbiter was removed"
tpm="TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=2321"
handles="$(in_c "$tpm tpm2_getcap handles-persistent; $tpm tpm2_getcap handles-nv-index")"
echo "$handles" | sed 's/^/  TPM: /'
for h in 0x81018023 0x81018024 0x1300023; do
  grep -qi "$h" <<< "$handles" || fail "$h is not on the TPM"
done
ok "purged: state and configuration gone; the user arbiter, the AK, the statement key and the sealing NV index stay"

step "Reinstall after the purge: PCR 23 still holds the purged log's extends"
in_c "dpkg -i /debs/upgrade.deb" > /dev/null
configure
if in_c "systemctl start arbiterd" 2> /dev/null; then
  fail "arbiterd started with an empty measurement log on an extended PCR 23"
fi
in_c "systemctl stop arbiterd; journalctl -u arbiterd --no-pager -o cat" > "/tmp/$c-refused" || true
grep -m1 "the log is empty but the PCR is not all-zero" "/tmp/$c-refused" | sed 's/^/  /' \
  || fail "not refused for the reason documented in packaging/README.md"
ok "refused until the TPM restarts (the next boot), as documented"

finish_step
printf '\n\033[1mEvery check passed\033[0m (%s s). Step timings:\n' "$((SECONDS - started))"
printf '  %s\n' "${timings[@]}"
