#!/usr/bin/env bash
# Installs redis-server, Debian's package, if it is missing. The tests of
# the Redis engine (redisstate/) start redis-servers of their own on Unix
# sockets in temporary directories; they do not use the system's service.
set -euo pipefail

if command -v redis-server >/dev/null; then
	exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
	sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends redis-server
command -v redis-server >/dev/null
