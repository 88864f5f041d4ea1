#!/usr/bin/env bash
# The appliance's root filesystem before the project's own files: a debootstrapped Debian
# bookworm (minbase) with the packages listed in `packages` (kernel, systemd, dracut, the
# TSS libraries), without documentation, man pages or locales.
#
#   packaging/appliance/rootfs.sh       # prints the path of the cached tarball
#
# Cached as $ARBITER_APPLIANCE_CACHE/rootfs-bookworm-<hash>.tar (default
# ~/.cache/arbiter-appliance), <hash> the first 12 hex digits of the SHA-256 of this script
# and `packages`: any change to either makes a new tarball (and removes the older ones);
# otherwise it is reused as is.
# Environment: ARBITER_DEBIAN_MIRROR (default http://deb.debian.org/debian). Needs root.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
suite="bookworm"
hash="$(cat "$here/rootfs.sh" "$here/packages" | sha256sum | cut -c1-12)"
cache="${ARBITER_APPLIANCE_CACHE:-$HOME/.cache/arbiter-appliance}"
tarball="$cache/rootfs-$suite-$hash.tar"
mirror="${ARBITER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
log() { printf 'appliance rootfs: %s\n' "$*" >&2; }

if [ -s "$tarball" ]; then
  log "cached: $tarball"
  echo "$tarball"
  exit 0
fi
[ "$(id -u)" = 0 ] || { log "needs root (debootstrap, chroot)"; exit 1; }
command -v debootstrap > /dev/null || apt-get install -y debootstrap > /dev/null

mkdir -p "$cache"
root="$(mktemp -d "$cache/rootfs.XXXXXX")"
trap 'rm -rf "$root"' EXIT
include="$(grep -v -e '^#' -e '^$' "$here/packages" | paste -sd,)"
# No documentation from the first package on: dpkg reads this before unpacking.
mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
cat > "$root/etc/dpkg/dpkg.cfg.d/90arbiter-nodoc" <<'NODOC'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
NODOC
start=$SECONDS
log "debootstrap $suite (minbase + $include) from $mirror"
debootstrap --variant=minbase --include="$include" --components=main \
  "$suite" "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 \
  || { tail -30 "$cache/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
log "debootstrap took $((SECONDS - start)) s"
cat > "$root/etc/apt/apt.conf.d/90arbiter" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
APT
chroot "$root" apt-get clean
find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2> /dev/null || true
rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/lib/apt/lists/* \
  "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
# The initramfs and the boot loader are made by build.sh, not by the kernel's hooks.
rm -f "$root"/boot/initrd.img-* "$root"/initrd.img* "$root"/vmlinuz*
tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
# Tarballs of earlier versions of this script or `packages` are not used again.
find "$cache" -maxdepth 1 -name "rootfs-$suite-*.tar" ! -path "$tarball" -delete
log "root filesystem: $(du -h "$tarball" | cut -f1) ($tarball), $((SECONDS - start)) s"
echo "$tarball"
