#!/usr/bin/env bash
# Runs every test of every module in this repository, with the race detector.
# Whatever a test needs beyond Go (redis-server for the Redis engine) it
# installs and starts itself; see scripts/redis.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/redis.sh

modules=(. redisstate bench adapters/fiberstorage adapters/limiterstore examples/fiber-prefork)
for m in "${modules[@]}"; do
	echo "== go test $m"
	(cd "$m" && go vet ./... && go test -race -count=1 -timeout 10m ./...)
done
