#!/usr/bin/env bash
# Builds Arbiter's container images from the base this directory makes (no registry):
#
#   packaging/container/build.sh [TARGET_DIR]
#
# TARGET_DIR holds release builds of `arbiterd` and `arbiter` (default target/release;
# `cargo build --release -p arbiter-daemon -p arbiter-client`). Ensures the base image
# (base-image.sh: cached by hash), then builds arbiter-swtpm, arbiter-daemon and
# arbiter-party (tag $ARBITER_IMAGE_TAG, default "local") from Containerfile, in a context
# holding only what the images copy. Prints how long each step took.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-${CARGO_TARGET_DIR:-$root/target}/release}"
tag="${ARBITER_IMAGE_TAG:-local}"

for b in arbiterd arbiter; do
  [ -x "$bin/$b" ] || { echo "build.sh: $bin/$b missing: cargo build --release -p arbiter-daemon -p arbiter-client" >&2; exit 1; }
done

start=$SECONDS
base="$("$here/base-image.sh")"
echo "build.sh: base image $base ready in $((SECONDS - start)) s"

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
cp "$here/Containerfile" "$here/swtpm-entrypoint.sh" "$here/daemon-entrypoint.sh" \
  "$here/arbiterd.toml" "$bin/arbiterd" "$bin/arbiter" "$context/"
# The release profile keeps line tables for backtraces; the images do without (a third
# of the size). The image's arbiterd then reports its own executable_sha256.
if command -v strip > /dev/null; then strip --strip-debug "$context/arbiterd" "$context/arbiter"; fi
chmod 0755 "$context"/*.sh "$context/arbiterd" "$context/arbiter"
chmod 0644 "$context/Containerfile" "$context/arbiterd.toml"

for target in swtpm daemon party; do
  start=$SECONDS
  docker build --build-arg "BASE=$base" --target "$target" \
    -t "arbiter-$target:$tag" -f "$context/Containerfile" "$context" > "$context/build.log" 2>&1 \
    || { tail -40 "$context/build.log" >&2; echo "build.sh: building arbiter-$target failed" >&2; exit 1; }
  echo "build.sh: arbiter-$target:$tag built in $((SECONDS - start)) s"
done
# The images these replaced (untagged by the new builds): removed, so rebuilds in CI do not
# pile up layers.
docker image prune -f --filter label=org.arbiter.image > /dev/null || true
