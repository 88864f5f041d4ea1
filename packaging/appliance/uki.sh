#!/usr/bin/env bash
# The appliance's unified kernel image (UKI): systemd-stub (systemd-boot-efi 252's
# linuxx64.efi.stub) with the sections .osrel, .cmdline, .linux and .initrd appended by
# objcopy after the stub's own, each at the next page-aligned address (bookworm has no
# ukify). The firmware measures the whole file (its Authenticode digest) into PCR 4.
#
#   uki.sh make OSREL CMDLINE VMLINUZ INITRD OUT.efi
#   uki.sh variant IMAGE_DIR OUT_DIR WORD...
#
# `variant` makes OUT_DIR/uki.efi and OUT_DIR/cmdline from an image built by build.sh
# (its IMAGE_DIR/parts) with WORDs appended to the kernel command line: the same kernel,
# initramfs and root filesystem, a different measured command line. `boot.sh start
# OUT_DIR VM_DIR PORT` on an existing machine boots it (only the ESP's UKI is replaced).
set -euo pipefail
stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub
log() { printf 'appliance uki: %s\n' "$*" >&2; }

make_uki() {
  local osrel="$1" cmdline="$2" vmlinuz="$3" initrd="$4" out="$5" end vma s name file
  [ -e "$stub" ] || apt-get install -y --no-install-recommends systemd-boot-efi > /dev/null
  end="$(objdump -h "$stub" | python3 -c '
import sys
ends = [int(f[3], 16) + int(f[2], 16) for f in (l.split() for l in sys.stdin)
        if len(f) == 7 and f[0].isdigit()]
print(max(ends))')"
  local args=()
  for s in "osrel:$osrel" "cmdline:$cmdline" "linux:$vmlinuz" "initrd:$initrd"; do
    name="${s%%:*}"
    file="${s#*:}"
    [ -s "$file" ] || { log "missing $file"; exit 1; }
    vma=$(( (end + 4095) / 4096 * 4096 ))
    args+=(--add-section ".$name=$file" --change-section-vma ".$name=$(printf '0x%x' "$vma")")
    end=$((vma + $(stat -c %s "$file")))
  done
  objcopy "${args[@]}" "$stub" "$out"
}

case "${1:-}" in
  make)
    [ $# = 6 ] || { log "usage: uki.sh make OSREL CMDLINE VMLINUZ INITRD OUT.efi"; exit 2; }
    make_uki "$2" "$3" "$4" "$5" "$6"
    ;;
  variant)
    [ $# -ge 4 ] || { log "usage: uki.sh variant IMAGE_DIR OUT_DIR WORD..."; exit 2; }
    image="$2"
    out="$3"
    shift 3
    parts="$image/parts"
    mkdir -p "$out"
    printf '%s %s' "$(cat "$image/cmdline")" "$*" > "$out/cmdline"
    make_uki "$parts/os-release" "$out/cmdline" "$parts/vmlinuz" "$parts/initrd.img" "$out/uki.efi"
    log "$out/uki.efi: command line $(cat "$out/cmdline")"
    ;;
  *) log "usage: uki.sh make ... | variant IMAGE_DIR OUT_DIR WORD..."; exit 2 ;;
esac
