#!/usr/bin/env bash
# Makes sure the Docker engine answers before the container and package tests use it.
# Starts dockerd when none runs; restarts it when it does not answer or cannot run a
# container within a minute (seen here: an engine whose containers' processes were gone
# while it still listed them as running, so every stop and run hung). Needs root for
# that; with an engine that works it changes nothing.
#
# Usage: packaging/container/docker-ready.sh [IMAGE]   (IMAGE: one to run `true` in)
set -euo pipefail
image=${1:-}

works() {
  timeout 30 docker info > /dev/null 2>&1 || return 1
  [ -z "$image" ] || ! docker image inspect "$image" > /dev/null 2>&1 \
    || timeout 60 docker run --rm --network none "$image" true > /dev/null 2>&1
}

if works; then
  echo "docker-ready: the engine answers"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "docker-ready: the Docker engine does not answer (restart it as root)" >&2
  exit 1
fi
if command -v systemctl > /dev/null && systemctl is-active --quiet docker 2>/dev/null; then
  echo "docker-ready: the engine does not answer; restarting docker.service" >&2
  systemctl restart docker
else
  echo "docker-ready: the engine does not answer; (re)starting dockerd" >&2
  pkill -TERM -x dockerd 2>/dev/null || true
  for _ in $(seq 1 30); do pgrep -x dockerd > /dev/null || break; sleep 1; done
  pkill -KILL -x dockerd 2>/dev/null || true
  (cd / && setsid nohup dockerd >> /var/log/dockerd.log 2>&1 < /dev/null &)
fi
for _ in $(seq 1 60); do
  if works; then
    echo "docker-ready: the engine answers again"
    exit 0
  fi
  sleep 2
done
echo "docker-ready: the Docker engine still does not answer" >&2
exit 1
