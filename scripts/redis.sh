#!/usr/bin/env bash
# Installs redis-server and redis-cli (Debian's packages) if they are
# missing. The tests of the Redis engine (redisstate/) start redis-servers of
# their own, on Unix sockets in temporary directories and, for a Cluster, on
# loopback ports; they do not use the system's service.
set -euo pipefail

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
	exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends redis-server redis-tools
command -v redis-server >/dev/null && command -v redis-cli >/dev/null
