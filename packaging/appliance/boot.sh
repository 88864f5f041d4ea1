#!/usr/bin/env bash
# Boots the Arbiter appliance image under qemu with OVMF (UEFI) and a software TPM 2.0
# (swtpm over its control socket, qemu's tpm-crb), the serial console captured to a file
# and arbiterd's port forwarded to the host.
#
#   packaging/appliance/boot.sh start IMAGE_DIR VM_DIR PORT   # boots, returns once qemu runs
#   packaging/appliance/boot.sh stop VM_DIR                   # ACPI power-off, waits;
#                                                               # exit 1 if it had to kill
#   packaging/appliance/boot.sh kvm                           # exit 0 if KVM can create a VM
#
# VM_DIR is one machine: made on its first start with a copy of IMAGE_DIR/disk.img, its
# own UEFI variable store and a TPM provisioned with EK certificates from a local CA
# (VM_DIR/tpm/ca: swtpm-localca-rootca-cert.pem, issuercert.pem, for `arbiter enroll
# --ek-ca`). Later starts boot the same disk and TPM again (a reboot: the TPM restarts,
# its PCRs are measured afresh, its NV and persistent keys stay). `start` with another
# IMAGE_DIR whose UKI differs replaces only the ESP's boot image (see docs/appliance.md).
#
# KVM is used when /dev/kvm can create a VM, TCG otherwise (ARBITER_APPLIANCE_ACCEL=tcg
# forces it). The console of each boot is appended to VM_DIR/serial.log; the TPM's log is
# VM_DIR/swtpm.log. arbiterd (port 8443 in the guest) is reached at https://127.0.0.1:PORT.
set -euo pipefail

ovmf_code=/usr/share/OVMF/OVMF_CODE_4M.fd
ovmf_vars=/usr/share/OVMF/OVMF_VARS_4M.fd
log() { printf 'appliance boot: %s\n' "$*" >&2; }

# KVM is usable when it can create a VM and run the firmware's first instructions: a
# nested KVM without real-mode support (e.g. the PVM module, kvm_pvm) creates VMs but stops
# OVMF at its first x87 instruction with "KVM internal error. Suberror: 1".
kvm_usable() {
  python3 - <<'PY' || return 1
import fcntl, os, sys
try:
    fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    vm = fcntl.ioctl(fd, 0xAE01, 0)  # KVM_CREATE_VM
    os.close(vm)
except OSError as e:
    print(f"KVM unusable: {e}", file=sys.stderr)
    sys.exit(1)
PY
  local probe
  probe="$(mktemp -d)"
  cp "$ovmf_vars" "$probe/vars.fd"
  # A usable KVM runs the firmware until the timeout stops it (exit 124). Anything else —
  # qemu exiting or aborting, e.g. a host that refuses a CPU register qemu sets for
  # `-cpu host` ("failed to set MSR 0x10a", an assertion) — means TCG.
  local rc=0
  timeout 4 qemu-system-x86_64 -machine q35,accel=kvm -cpu host -m 256 -nodefaults \
    -display none -monitor none \
    -drive "if=pflash,format=raw,unit=0,file=$ovmf_code,readonly=on" \
    -drive "if=pflash,format=raw,unit=1,file=$probe/vars.fd" > "$probe/err" 2>&1 || rc=$?
  if [ "$rc" -ne 124 ] || grep -q -e "KVM internal error" -e "failed to initialize kvm" "$probe/err"; then
    log "KVM cannot run OVMF here (qemu exited $rc: $(grep -m1 -v '^$' "$probe/err" | cut -c1-160)): using TCG"
    rm -rf "$probe"
    return 1
  fi
  rm -rf "$probe"
}

need_tools() {
  local missing=""
  command -v qemu-system-x86_64 > /dev/null || missing="$missing qemu-system-x86"
  [ -e "$ovmf_code" ] || missing="$missing ovmf"
  command -v swtpm_setup > /dev/null || missing="$missing swtpm swtpm-tools"
  if [ -n "$missing" ]; then
    log "installing:$missing"
    apt-get install -y --no-install-recommends $missing > /dev/null
  fi
}

provision_tpm() {
  local dir="$1"
  mkdir -p "$dir/state" "$dir/ca" "$dir/ek-certs"
  cat > "$dir/swtpm_setup.conf" <<CONF
create_certs_tool = /usr/bin/swtpm_localca
create_certs_tool_config = $dir/swtpm-localca.conf
create_certs_tool_options = $dir/swtpm-localca.options
active_pcr_banks = sha256
CONF
  cat > "$dir/swtpm-localca.conf" <<CONF
statedir = $dir/ca
signingkey = $dir/ca/signkey.pem
issuercert = $dir/ca/issuercert.pem
certserial = $dir/ca/certserial
CONF
  printf '%s\n' '--platform-manufacturer Arbiter' '--platform-version 2.1' \
    '--platform-model appliance-vm' > "$dir/swtpm-localca.options"
  swtpm_setup --tpm2 --tpmstate "$dir/state" --config "$dir/swtpm_setup.conf" \
    --create-ek-cert --create-platform-cert --ecc --lock-nvram --overwrite \
    --write-ek-cert-files "$dir/ek-certs" > "$dir/setup.log" 2>&1 \
    || { cat "$dir/setup.log" >&2; log "swtpm_setup failed"; exit 1; }
}

# Replaces the boot image on the VM's ESP with IMAGE_DIR's, when it differs.
install_uki() {
  local image="$1" vm="$2"
  local esp_off
  esp_off="$(sfdisk -J "$vm/disk.img" | python3 -c '
import json, sys
t = json.load(sys.stdin)["partitiontable"]
p = [p for p in t["partitions"] if p.get("name") == "esp"][0]
print(p["start"] * t.get("sectorsize", 512))')"
  mcopy -o -i "$vm/disk.img@@$esp_off" "$image/uki.efi" ::/EFI/BOOT/BOOTX64.EFI
}

start() {
  local image vm port accel
  image="$(realpath "$1")"
  vm="$2"
  port="$3"
  need_tools
  [ -s "$image/uki.efi" ] || { log "no boot image in $image (build.sh, uki.sh variant)"; exit 1; }
  mkdir -p "$vm"
  vm="$(realpath "$vm")"
  if [ -s "$vm/qemu.pid" ] && kill -0 "$(cat "$vm/qemu.pid")" 2> /dev/null; then
    log "$vm is running already (qemu pid $(cat "$vm/qemu.pid"))"
    exit 1
  fi
  if [ ! -s "$vm/disk.img" ]; then
    [ -s "$image/disk.img" ] || { log "no disk image in $image for a new machine (build.sh)"; exit 1; }
    cp --sparse=always "$image/disk.img" "$vm/disk.img"
    cp "$ovmf_vars" "$vm/OVMF_VARS.fd"
    provision_tpm "$vm/tpm"
    log "new machine $vm (disk from $image, TPM provisioned)"
  elif ! cmp -s "$image/uki.efi" "$vm/uki.efi" 2> /dev/null; then
    install_uki "$image" "$vm"
    log "boot image replaced by $image/uki.efi"
  fi
  cp "$image/uki.efi" "$vm/uki.efi"

  accel=kvm
  if [ "${ARBITER_APPLIANCE_ACCEL:-}" = tcg ] || ! kvm_usable; then accel=tcg; fi
  rm -f "$vm/swtpm.sock" "$vm/qmp.sock"
  swtpm socket --tpm2 --tpmstate "dir=$vm/tpm/state" \
    --ctrl "type=unixio,path=$vm/swtpm.sock" \
    --log "file=$vm/swtpm.log,level=1" --pid "file=$vm/swtpm.pid" --daemon
  for _ in $(seq 50); do [ -S "$vm/swtpm.sock" ] && break; sleep 0.1; done
  local cpu=(-cpu host)
  [ "$accel" = tcg ] && cpu=(-cpu max)
  echo "=== boot $(date -u +%FT%TZ) accel=$accel image=$image" >> "$vm/serial.log"
  qemu-system-x86_64 -machine "q35,accel=$accel" "${cpu[@]}" -m 1024 -smp 2 \
    -nodefaults -display none -vga none \
    -drive "if=pflash,format=raw,unit=0,file=$ovmf_code,readonly=on" \
    -drive "if=pflash,format=raw,unit=1,file=$vm/OVMF_VARS.fd" \
    -drive "file=$vm/disk.img,format=raw,if=virtio" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:8443" -device virtio-net-pci,netdev=n0 \
    -device virtio-rng-pci \
    -chardev "socket,id=chrtpm,path=$vm/swtpm.sock" -tpmdev emulator,id=tpm0,chardev=chrtpm \
    -device tpm-crb,tpmdev=tpm0 \
    -chardev "file,id=ser0,path=$vm/serial.log,append=on" -serial chardev:ser0 \
    -qmp "unix:$vm/qmp.sock,server=on,wait=off" \
    -pidfile "$vm/qemu.pid" -daemonize
  echo "$accel" > "$vm/accel"
  log "booting $vm ($accel), arbiterd at https://127.0.0.1:$port, console $vm/serial.log"
}

stop() {
  local vm="$1" pid unclean=0
  [ -s "$vm/qemu.pid" ] || { log "$vm is not running"; return 0; }
  pid="$(cat "$vm/qemu.pid")"
  if kill -0 "$pid" 2> /dev/null; then
    # QMP: the greeting, capabilities negotiation, then the ACPI power button.
    python3 - "$vm/qmp.sock" <<'PY' || log "could not send system_powerdown"
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
f = s.makefile("rw")
def call(cmd):
    f.write(json.dumps({"execute": cmd}) + "\n")
    f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r or "error" in r:
            if "error" in r:
                sys.exit(f"QMP {cmd}: {r['error']}")
            return
json.loads(f.readline())  # greeting
call("qmp_capabilities")
call("system_powerdown")
PY
    for _ in $(seq 600); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2> /dev/null; then
      # A power loss: the guest sent no TPM2_Shutdown, which the TPM counts as a
      # dictionary-attack failure (three of them lock out swtpm's DA-protected keys, the
      # daemon's AK among them; docs/appliance.md).
      log "no ACPI power-off within 60 s: killing qemu $pid (an unclean TPM shutdown)"
      kill "$pid"
      sleep 1
      unclean=1
    fi
  fi
  rm -f "$vm/qemu.pid"
  if [ -s "$vm/swtpm.pid" ]; then
    kill "$(cat "$vm/swtpm.pid")" 2> /dev/null || true
    rm -f "$vm/swtpm.pid"
  fi
  return "$unclean"
}

case "${1:-}" in
  start) shift; [ $# = 3 ] || { log "usage: boot.sh start IMAGE_DIR VM_DIR PORT"; exit 2; }; start "$@" ;;
  stop) shift; [ $# = 1 ] || { log "usage: boot.sh stop VM_DIR"; exit 2; }; stop "$1" ;;
  kvm) kvm_usable ;;
  *) log "usage: boot.sh start IMAGE_DIR VM_DIR PORT | stop VM_DIR | kvm"; exit 2 ;;
esac
