#!/usr/bin/env bash
# Builds the Arbiter appliance: a bootable GPT disk image of Debian bookworm whose boot
# chain is measured and whose read-only root filesystem holds the daemon.
#
#   packaging/appliance/build.sh DEB [OUT]        # OUT defaults to target/appliance/image
#
# DEB is the project's package (`make deb`, PACKAGE_PROFILE=debug for the debug build).
# The result in OUT:
#   disk.img        the disk: ESP (the unified kernel image as EFI/BOOT/BOOTX64.EFI), the
#                   root filesystem (ext4, read-only), its dm-verity hash tree, and an
#                   empty data partition mounted at /var/lib/arbiter (the daemon's state)
#   uki.efi         the unified kernel image: systemd-stub + kernel + initramfs (dracut)
#                   + the kernel command line, which names the verity root hash
#   cmdline         that command line
#   reference.toml  reference values computed from these files for `arbiter policy
#                   compare`: the Authenticode digests of the UKI and its kernel, the
#                   daemon's SHA-256, PCR 4 and PCR 9 (which holds the command line)
#                   precomputed
#   build.env       the values above as shell variables (ROOT_HASH, UKI_SHA256, ...)
#   parts/          the UKI's os-release, kernel and initramfs (for `uki.sh variant`)
#
# Environment:
#   ARBITER_APPLIANCE_OPERATORS   identities (`arbiter identity new`) written as
#                                 access.operators in /etc/arbiter/arbiterd.toml
#   ARBITER_APPLIANCE_VERSION     the image version (os-release IMAGE_VERSION; default 1)
#   ARBITER_APPLIANCE_CMDLINE_EXTRA  words appended to the kernel command line
#   ARBITER_APPLIANCE_CACHE       the cache of rootfs.sh (default ~/.cache/arbiter-appliance)
# Needs root (chroot, file ownership), dracut runs inside the image's root. Host tools:
# systemd-boot-efi (linuxx64.efi.stub), binutils (objcopy), cryptsetup-bin (veritysetup),
# dosfstools + mtools (the ESP), fdisk (sfdisk), e2fsprogs, python3.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
deb="$(realpath "${1:?usage: build.sh DEB [OUT]}")"
out="${2:-target/appliance/image}"
version="${ARBITER_APPLIANCE_VERSION:-1}"
operators="${ARBITER_APPLIANCE_OPERATORS:-}"
cmdline_extra="${ARBITER_APPLIANCE_CMDLINE_EXTRA:-}"
stub=/usr/lib/systemd/boot/efi/linuxx64.efi.stub  # checked here, used by uki.sh
log() { printf 'appliance build: %s\n' "$*" >&2; }
t0=$SECONDS
step_start=$SECONDS
step() { log "$1 ($((SECONDS - step_start)) s)"; step_start=$SECONDS; }

[ "$(id -u)" = 0 ] || { log "needs root (chroot, file ownership)"; exit 1; }
[ -s "$deb" ] || { log "no package at $deb"; exit 1; }
missing=""
for t in objcopy:binutils veritysetup:cryptsetup-bin mkfs.vfat:dosfstools mcopy:mtools \
  sfdisk:fdisk mkfs.ext4:e2fsprogs "$stub":systemd-boot-efi; do
  [ -e "${t%%:*}" ] || command -v "${t%%:*}" > /dev/null || missing="$missing ${t##*:}"
done
if [ -n "$missing" ]; then
  log "installing:$missing"
  apt-get install -y --no-install-recommends $missing > /dev/null
fi
for id in $operators; do
  [[ "$id" =~ ^[0-9a-f]{64}$ ]] || { log "operator identity $id is not 64 lowercase hex"; exit 1; }
done

tarball="$("$here/rootfs.sh")"
step "root filesystem tarball ready: $tarball"

mkdir -p "$out"
out="$(realpath "$out")"
work="$(mktemp -d "${TMPDIR:-/tmp}/arbiter-appliance.XXXXXX")"
root="$work/root"
# /proc and /dev for the package's scripts and dracut; unmounted before anything is removed
# (and the removal never crosses into another file system).
cleanup() {
  umount "$root/proc" "$root/dev" 2> /dev/null || true
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir "$root"
tar --numeric-owner -C "$root" -xf "$tarball"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"

# The project's package, offline: its Depends are in the root filesystem already.
cp "$deb" "$root/tmp/arbiter.deb"
chroot "$root" dpkg -i /tmp/arbiter.deb > "$work/dpkg.log" 2>&1 \
  || { cat "$work/dpkg.log" >&2; log "dpkg -i failed"; exit 1; }
rm "$root/tmp/arbiter.deb"
step "installed $(basename "$deb")"

# The daemon's configuration: listening on the appliance's network, the TPM through the
# kernel's resource manager, the given operators. Part of the measured root filesystem.
ops=""
for id in $operators; do ops="$ops${ops:+, }\"$id\""; done
sed -i \
  -e 's|^listen = .*|listen = "0.0.0.0:8443"|' \
  -e "s|^operators = .*|operators = [$ops]|" \
  "$root/etc/arbiter/arbiterd.toml"
grep -q '^listen = "0.0.0.0:8443"' "$root/etc/arbiter/arbiterd.toml" \
  || { log "could not set listen in arbiterd.toml"; exit 1; }
chroot "$root" arbiterd check-config --config /etc/arbiter/arbiterd.toml > /dev/null \
  || { log "arbiterd check-config refused the appliance's configuration"; exit 1; }

# The system around it.
echo arbiter > "$root/etc/hostname"
: > "$root/etc/machine-id"   # empty: systemd uses a transient one on the read-only root
arbiter_ids="$(chroot "$root" sh -c 'echo "$(id -u arbiter):$(id -g arbiter)"')"
cat > "$root/etc/fstab" <<FSTAB
# The root is /dev/mapper/root, opened read-only by systemd-veritysetup in the initramfs.
/dev/mapper/root        /                 ext4  ro                              0 0
# The daemon's state (not covered by the measurement: its secrets are sealed to it).
PARTLABEL=arbiter-data  /var/lib/arbiter  ext4  rw,nosuid,nodev,noexec          0 0
tmpfs                   /tmp              tmpfs nosuid,nodev,mode=1777          0 0
tmpfs                   /var/tmp          tmpfs nosuid,nodev,mode=1777          0 0
FSTAB
# Mount points on the read-only root; the data file system's root belongs to the daemon.
# systemd-logind's state directory must exist: it cannot be created at run time.
mkdir -p "$root/var/lib/arbiter" "$root/var/lib/systemd/linger"
chown "$arbiter_ids" "$root/var/lib/arbiter"
chmod 0700 "$root/var/lib/arbiter"
# The serial console is the appliance's log: the journal (the daemon's included) goes there.
mkdir -p "$root/etc/systemd/journald.conf.d"
cat > "$root/etc/systemd/journald.conf.d/50-arbiter-console.conf" <<JOURNAL
[Journal]
ForwardToConsole=yes
TTYPath=/dev/ttyS0
MaxLevelConsole=info
JOURNAL
mkdir -p "$root/etc/systemd/network"
cat > "$root/etc/systemd/network/50-dhcp.network" <<NET
[Match]
Name=en* eth*

[Network]
DHCP=ipv4
NET
chroot "$root" systemctl enable systemd-networkd.service > /dev/null 2>&1
# Nothing measures the phases into PCR 11 behind the daemon's back (it is not in the
# platform set, but a later set might take it).
chroot "$root" systemctl mask systemd-pcrphase.service systemd-pcrphase-sysinit.service \
  systemd-pcrphase-initrd.service > /dev/null 2>&1 || true
# No interactive root: the root account stays locked (debootstrap leaves it so).
grep -q '^root:[*!]' "$root/etc/shadow" || { log "root has a password in the image"; exit 1; }
sed -i "s/^IMAGE_VERSION=.*//" "$root/etc/os-release"
echo "IMAGE_ID=arbiter-appliance" >> "$root/etc/os-release"
echo "IMAGE_VERSION=$version" >> "$root/etc/os-release"

# Smaller: only the kernel modules this machine uses (and what they depend on); every other
# module (about 380 MB of drivers) is removed. The list is the virtual hardware of boot.sh
# (virtio disk, network and RNG, the TPM's CRB and TIS interfaces), the file systems, dm-verity
# and its hash, what systemd loads itself, and the ACPI power button (a clean power-off).
kver="$(ls "$root/lib/modules")"
keep_modules="virtio_pci virtio_blk virtio_scsi virtio_net virtio_rng virtio_console
  tpm_crb tpm_tis dm_mod dm_verity ext4 vfat nls_cp437 nls_ascii efivarfs autofs4
  sha256_ssse3 crc32c_intel crc32c_generic ahci sd_mod button evdev"
chroot "$root" sh -c "for m in $(echo $keep_modules); do modprobe -S $kver --show-depends \$m; done" \
  | awk '$1 == "insmod" {print $2}' | sort -u > "$work/modules.keep"
[ -s "$work/modules.keep" ] || { log "no kernel module resolved"; exit 1; }
find "$root/lib/modules/$kver/kernel" -name '*.ko*' | sed "s|^$root||" | sort \
  | comm -23 - "$work/modules.keep" | sed "s|^|$root|" | xargs rm -f
find "$root/lib/modules/$kver/kernel" -type d -empty -delete
chroot "$root" depmod "$kver"
step "configured the root filesystem (kernel $kver)"

# The initramfs: systemd, udev, the virtio disk and dm-verity; no host-specific detection.
if ! chroot "$root" dracut --quiet --force --no-hostonly --reproducible \
  -m "systemd systemd-initrd dracut-systemd base fs-lib rootfs-block udev-rules dm systemd-veritysetup" \
  --drivers "virtio_pci virtio_blk virtio_scsi sd_mod ahci ext4 dm_verity" \
  /tmp/initrd.img "$kver" > "$work/dracut.log" 2>&1; then
  cat "$work/dracut.log" >&2
  log "dracut failed"
  exit 1
fi
umount "$root/proc" "$root/dev"
mv "$root/tmp/initrd.img" "$work/initrd.img"
cp "$root/boot/vmlinuz-$kver" "$work/vmlinuz"
rm -f "$root"/boot/*
step "initramfs $(du -h "$work/initrd.img" | cut -f1)"

# The root filesystem image (no journal: it is never written) and its verity hash tree.
# The salt and UUIDs are derived from the version so a rebuild of the same inputs keeps them.
seed="$(printf 'arbiter-appliance %s' "$version" | sha256sum | cut -c1-64)"
uuid_of() { printf '%s' "$(printf '%s %s' "$seed" "$1" | sha256sum)" \
  | sed -E 's/^(.{8})(.{4}).(.{3}).(.{3})(.{12}).*/\1-\2-4\3-8\4-\5/'; }
root_mb=$(($(du -sm "$root" | cut -f1) * 115 / 100 + 32))
SOURCE_DATE_EPOCH=0 mkfs.ext4 -q -F -b 4096 -O ^has_journal -L arbiter-root -U "$(uuid_of rootfs)" \
  -E "hash_seed=$(uuid_of hashseed)" -d "$root" "$work/root.img" "${root_mb}M"
veritysetup format --salt "$seed" --uuid "$(uuid_of verity)" \
  "$work/root.img" "$work/root.verity" > "$work/verity.txt"
root_hash="$(awk '/^Root hash:/ {print $3}' "$work/verity.txt")"
[[ "$root_hash" =~ ^[0-9a-f]{64}$ ]] || { cat "$work/verity.txt" >&2; log "no root hash"; exit 1; }
step "root filesystem ${root_mb} MiB, verity root hash $root_hash"

# The kernel command line, embedded in the UKI (measured with it).
part_root="$(uuid_of part-root)"
part_verity="$(uuid_of part-verity)"
cmdline="root=/dev/mapper/root ro roothash=$root_hash"
cmdline="$cmdline systemd.verity_root_data=PARTUUID=$part_root"
cmdline="$cmdline systemd.verity_root_hash=PARTUUID=$part_verity"
# No shell when the root cannot be opened (a root filesystem that does not match the root
# hash, a changed disk): the initramfs powers the machine off. The ESP is not mounted.
cmdline="$cmdline rd.shell=0 rd.emergency=poweroff systemd.gpt_auto=0"
cmdline="$cmdline console=ttyS0 panic=10${cmdline_extra:+ $cmdline_extra}"
printf '%s' "$cmdline" > "$work/cmdline"

# The unified kernel image (uki.sh): systemd-stub, os-release, the command line, the
# kernel and the initramfs. The parts are kept in OUT/parts for `uki.sh variant`.
cp "$root/etc/os-release" "$work/os-release"
"$here/uki.sh" make "$work/os-release" "$work/cmdline" "$work/vmlinuz" "$work/initrd.img" \
  "$work/uki.efi"
uki_sha="$(python3 "$here/authenticode.py" "$work/uki.efi")"
step "unified kernel image $(du -h "$work/uki.efi" | cut -f1), Authenticode $uki_sha"

# The ESP.
esp_mb=$(( $(stat -c %s "$work/uki.efi") / 1048576 + 16 ))
mkfs.vfat -C -n ESP -i 41524249 "$work/esp.img" $((esp_mb * 1024)) > /dev/null
mmd -i "$work/esp.img" ::/EFI ::/EFI/BOOT
mcopy -i "$work/esp.img" "$work/uki.efi" ::/EFI/BOOT/BOOTX64.EFI

# The data partition, empty, owned by the daemon's user.
data_mb=256
mkfs.ext4 -q -L arbiter-data -E "root_owner=$arbiter_ids" -U "$(uuid_of data)" \
  "$work/data.img" "${data_mb}M"

# The disk: GPT, 1 MiB aligned.
verity_mb=$(( ($(stat -c %s "$work/root.verity") + 1048575) / 1048576 ))
total_mb=$((1 + esp_mb + root_mb + verity_mb + data_mb + 1))
rm -f "$work/disk.img"
truncate -s "${total_mb}M" "$work/disk.img"
sfdisk -q --no-reread --no-tell-kernel "$work/disk.img" <<SFDISK
label: gpt
label-id: $(uuid_of disk)
start=1MiB, size=${esp_mb}MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=$(uuid_of part-esp), name=esp
size=${root_mb}MiB, type=4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709, uuid=$part_root, name=arbiter-root
size=${verity_mb}MiB, type=2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5, uuid=$part_verity, name=arbiter-root-verity
size=${data_mb}MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=$(uuid_of part-data), name=arbiter-data
SFDISK
offset=1
for p in esp:$esp_mb root:$root_mb verity:$verity_mb data:$data_mb; do
  f="$work/${p%%:*}.img"
  [ "${p%%:*}" = verity ] && f="$work/root.verity"
  dd if="$f" of="$work/disk.img" bs=1M seek="$offset" conv=notrunc,sparse status=none
  offset=$((offset + ${p##*:}))
done
step "disk image ${total_mb} MiB"

exe_sha="$(sha256sum "$root/usr/bin/arbiterd" | cut -d' ' -f1)"
# What the boot measures, precomputed from these files (docs/appliance.md, "What the
# measured boot covers"): OVMF measures the UKI into PCR 4 after its boot-option action and
# the separator; systemd-stub (252) starts the embedded kernel with LoadImage, so the
# firmware measures the kernel's Authenticode digest into PCR 4 too; the kernel's EFI stub
# measures its command line (the load options, UTF-16LE with the NUL) and then the initrd
# into PCR 9.
kernel_sha="$(python3 "$here/authenticode.py" "$work/vmlinuz")"
read -r pcr4 pcr9 < <(python3 - "$uki_sha" "$kernel_sha" "$work/cmdline" "$work/initrd.img" <<'PY'
import hashlib, sys
uki, kernel, cmdline, initrd = sys.argv[1:]
h = lambda b: hashlib.sha256(b).digest()
def replay(*digests):
    pcr = bytes(32)
    for d in digests:
        pcr = h(pcr + d)
    return pcr.hex()
pcr4 = replay(h(b"Calling EFI Application from Boot Option"), h(bytes(4)),
              bytes.fromhex(uki), bytes.fromhex(kernel))
text = open(cmdline, "rb").read().decode()
pcr9 = replay(h((text + "\0").encode("utf-16-le")), h(open(initrd, "rb").read()))
print(pcr4, pcr9)
PY
)
rm -rf "$out/parts"
mkdir -p "$out/parts"
cp "$work/os-release" "$work/vmlinuz" "$work/initrd.img" "$out/parts/"
mv "$work/disk.img" "$work/uki.efi" "$work/cmdline" "$out/"
cat > "$out/reference.toml" <<REF
# Reference values of the Arbiter appliance image $version, computed from its build outputs
# by packaging/appliance/build.sh (docs/appliance.md). Compare a capture with
#   arbiter policy compare POLICY --reference reference.toml
image = "arbiter-appliance $version ($(basename "$deb"), kernel $kver)"
# The EFI binaries the firmware measures into PCR 4 (SHA-256 Authenticode): the unified
# kernel image (EFI/BOOT/BOOTX64.EFI), then the kernel systemd-stub starts from it.
boot_applications = ["$uki_sha", "$kernel_sha"]
# The kernel command line (in the UKI, measured into PCR 4 with it, into PCR 9 by the
# kernel and PCR 11 by systemd-stub) is pinned through PCR 9 below; \`policy capture\` reads
# a command line only from GRUB's events, so it is not a separate value here:
#   $cmdline
secure_boot = false
executable_sha256 = ["$exe_sha"]

[pcrs]
# PCR 4: boot-option action, separator, the UKI, the kernel.
4 = "$pcr4"
# PCR 9: the kernel command line (with the verity root hash), then the initramfs.
9 = "$pcr9"
REF
cat > "$out/build.env" <<ENV
IMAGE_VERSION=$version
KERNEL=$kver
ROOT_HASH=$root_hash
UKI_SHA256=$uki_sha
KERNEL_SHA256=$kernel_sha
PCR4=$pcr4
PCR9=$pcr9
ARBITERD_SHA256=$exe_sha
CMDLINE="$cmdline"
ENV
log "done in $((SECONDS - t0)) s: $out/disk.img"
