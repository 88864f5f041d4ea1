#!/usr/bin/env bash
# Arbiter's container base image, built here with no image registry: a minimal Debian
# bookworm root filesystem from debootstrap, imported with `docker import`.
#
#   packaging/container/base-image.sh        # prints the image name it ensured
#
# The image is tagged `arbiter-base:bookworm-<hash>` (the first 12 hex digits of this
# script's SHA-256, so any change to the package set or the steps makes a new image) and
# `arbiter-base:bookworm` (the latest one built). Idempotent and cached at two levels:
#   1. the hash-tagged image exists            -> only retags, about a second;
#   2. the root filesystem tarball is cached   -> `docker import` only, a few seconds;
#   3. otherwise                               -> debootstrap (a few minutes), then both.
# The tarball lives in $ARBITER_CONTAINER_CACHE (default /var/cache/arbiter-container).
#
# The root filesystem is `--variant=minbase` plus ca-certificates (parties speak HTTPS)
# and apt sources for bookworm, bookworm-updates and bookworm-security, so images built
# FROM it (the Containerfiles next to this script, the .deb smoke test) can `apt-get
# install` what they need. Documentation, man pages, locales and apt lists are removed.
#
# Environment: ARBITER_DEBIAN_MIRROR (default http://deb.debian.org/debian),
# ARBITER_DEBIAN_SECURITY (default http://deb.debian.org/debian-security). Needs root,
# debootstrap (installed when missing on Debian/Ubuntu) and a Docker engine.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="arbiter-base"
suite="bookworm"
hash="$(sha256sum "$here/base-image.sh" | cut -c1-12)"
image="$repo:$suite-$hash"
cache="${ARBITER_CONTAINER_CACHE:-/var/cache/arbiter-container}"
tarball="$cache/$repo-$suite-$hash.tar"
mirror="${ARBITER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${ARBITER_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
include="ca-certificates"

log() { printf 'base-image: %s\n' "$*" >&2; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

if docker image inspect "$image" > /dev/null 2>&1; then
  docker tag "$image" "$repo:$suite"
  log "$image is present (cached)"
  echo "$image"
  exit 0
fi

if [ ! -s "$tarball" ]; then
  command -v debootstrap > /dev/null || {
    log "installing debootstrap"
    $SUDO apt-get install -y debootstrap > /dev/null 2>&1 \
      || { $SUDO apt-get update > /dev/null && $SUDO apt-get install -y debootstrap > /dev/null; }
  }
  $SUDO mkdir -p "$cache"
  root="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap '$SUDO rm -rf "$root"' EXIT
  start=$SECONDS
  log "debootstrap $suite (minbase + $include) from $mirror"
  $SUDO debootstrap --variant=minbase --include="$include" --components=main \
    "$suite" "$root" "$mirror" > "$cache/debootstrap.log" 2>&1 \
    || { tail -30 "$cache/debootstrap.log" >&2; log "debootstrap failed"; exit 1; }
  log "debootstrap took $((SECONDS - start)) s"
  # apt: the same mirror, updates and security; no recommends, no documentation.
  $SUDO tee "$root/etc/apt/sources.list" > /dev/null <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
  $SUDO tee "$root/etc/apt/apt.conf.d/90arbiter" > /dev/null <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
EOF
  $SUDO tee "$root/etc/dpkg/dpkg.cfg.d/90arbiter-nodoc" > /dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  $SUDO chroot "$root" apt-get clean
  $SUDO find "$root/usr/share/doc" -mindepth 2 ! -name copyright -delete 2> /dev/null || true
  $SUDO rm -rf "$root"/usr/share/{man,info,locale,lintian}/* "$root"/var/lib/apt/lists/* \
    "$root"/var/cache/apt/*.bin "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
  # A container gets its own resolver and hostname from the engine.
  $SUDO rm -f "$root/etc/hostname" "$root/etc/resolv.conf"
  $SUDO tar --numeric-owner -C "$root" -cf "$tarball.tmp" .
  $SUDO mv "$tarball.tmp" "$tarball"
  # Tarballs of earlier versions of this script are not used again.
  $SUDO find "$cache" -maxdepth 1 -name "$repo-$suite-*.tar" ! -path "$tarball" -delete
  log "root filesystem: $(du -h "$tarball" | cut -f1) ($tarball)"
fi

start=$SECONDS
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["/bin/bash"]' \
  --message "debootstrap $suite minbase + $include" \
  "$tarball" "$image" > /dev/null
docker tag "$image" "$repo:$suite"
log "imported $image in $((SECONDS - start)) s"
echo "$image"
