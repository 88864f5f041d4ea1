#!/usr/bin/env bash
# Upgrades a running appliance VM to a new image (docs/appliance.md, "Upgrades"). A new
# image has other measured values (its kernel command line names another root hash), and
# the daemon's secrets are sealed to the old ones: every instance still live would be
# locked away for good. So, as the appliance's operator:
#
#   1. list the live instances (`arbiter upgrade status`) and refuse while any is live,
#      unless --force (their inputs are then lost; an epoch reset gives them up);
#   2. authorize the upgrade (`arbiter upgrade authorize`): the daemon creates no instance
#      from now on, and its first start in the new platform state seals afresh;
#   3. power the machine off (ACPI, boot.sh stop);
#   4. install the new image on its disk: the new ESP, root and verity partitions, the
#      data partition (/var/lib/arbiter: the store, the measurement log) carried over; the
#      previous disk is kept as VM_DIR/disk.img.previous;
#   5. boot it and wait until arbiterd reports "ok" (sealed afresh, not degraded);
#   6. name the reference values to publish (NEW_IMAGE_DIR/reference.toml): parties
#      compare their new capture with them before they trust the new image.
#
#   ARBITER_STATE=OPERATOR_DIR packaging/appliance/upgrade.sh [--force] NEW_IMAGE_DIR VM_DIR PORT
#
# ARBITER_STATE is the operator's `arbiter` state directory (config.toml naming the
# appliance and the operator's identity); ARBITER the CLI (default: `arbiter` on PATH).
# Exit status: 0 upgraded; 2 refused (instances live, nothing changed); 1 failed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
log() { printf 'appliance upgrade: %s\n' "$*" >&2; }
ARBITER="${ARBITER:-arbiter}"

force=0
if [ "${1:-}" = --force ]; then force=1; shift; fi
[ $# = 3 ] || { log "usage: upgrade.sh [--force] NEW_IMAGE_DIR VM_DIR PORT"; exit 1; }
image="$(realpath "$1")"
vm="$(realpath "$2")"
port="$3"
[ -s "$image/disk.img" ] && [ -s "$image/reference.toml" ] \
  || { log "$image is not a built image (build.sh): no disk.img or reference.toml"; exit 1; }
[ -s "$vm/disk.img" ] || { log "$vm is not a machine (boot.sh start)"; exit 1; }

# 1. What is live.
status="$("$ARBITER" upgrade status --json)" || { log "cannot list the live instances"; exit 1; }
live="$(printf '%s' "$status" | python3 -c '
import json, sys
for i in json.load(sys.stdin)["live_instances"]:
    print(i["id"], i["state"], i["name"])')"
if [ -n "$live" ]; then
  log "live instances (their inputs are sealed to the running image):"
  printf '%s\n' "$live" | sed 's/^/  /' >&2
  if [ "$force" = 0 ]; then
    log "refused: finish and destroy them first, or --force to lose them"
    exit 2
  fi
  log "--force: their inputs will be unrecoverable after the upgrade"
fi

# 2. The daemon's own check and the authorization (no new instances from now on).
args=()
[ "$force" = 1 ] && args=(--force)
"$ARBITER" upgrade authorize "${args[@]}" >&2 \
  || { log "the appliance refused the upgrade authorization"; exit 2; }

# 3. A clean power-off: the TPM gets its TPM2_Shutdown.
"$here/boot.sh" stop "$vm" || { log "the appliance did not power off cleanly"; exit 1; }

# 4. The new image's disk with the old data partition.
part() {  # part DISK NAME -> "START_BYTES SIZE_BYTES"
  sfdisk -J "$1" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
p = [p for p in t["partitions"] if p.get("name") == sys.argv[1]][0]
s = t.get("sectorsize", 512)
print(p["start"] * s, p["size"] * s)' "$2"
}
read -r old_start old_size < <(part "$vm/disk.img" arbiter-data)
read -r new_start new_size < <(part "$image/disk.img" arbiter-data)
[ "$old_size" = "$new_size" ] \
  || { log "the data partitions differ in size ($old_size, $new_size bytes): not carried over"; exit 1; }
cp --sparse=always "$image/disk.img" "$vm/disk.img.new"
dd if="$vm/disk.img" of="$vm/disk.img.new" bs=1M iflag=skip_bytes,count_bytes \
  oflag=seek_bytes conv=notrunc,sparse skip="$old_start" seek="$new_start" count="$old_size" \
  status=none
mv "$vm/disk.img" "$vm/disk.img.previous"
mv "$vm/disk.img.new" "$vm/disk.img"
log "installed $image on $vm/disk.img (data partition carried over; previous disk: disk.img.previous)"

# 5. Boot the new image; its daemon must seal afresh, not start degraded.
"$here/boot.sh" start "$image" "$vm" "$port"
limit=180
[ "$(cat "$vm/accel")" = tcg ] && limit=900
for _ in $(seq "$limit"); do
  if health="$("$ARBITER" health 2> /dev/null)"; then break; fi
  kill -0 "$(cat "$vm/qemu.pid")" 2> /dev/null || { log "qemu exited before arbiterd answered"; exit 1; }
  sleep 1
done
[ -n "${health:-}" ] || { log "arbiterd did not answer within $limit s"; exit 1; }
printf '%s\n' "$health" | grep -q '"status":"ok"' \
  || { log "the upgraded appliance is not healthy: $health"; exit 1; }

# 6. What parties need to trust the new image.
# shellcheck disable=SC1091
. "$image/build.env"
log "upgraded to image version $IMAGE_VERSION (UKI $UKI_SHA256, root hash $ROOT_HASH)"
log "publish $image/reference.toml: parties compare their next capture with it"
