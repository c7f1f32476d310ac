#!/usr/bin/env bash
# Vets every module for the other systems it builds on, then runs every test
# of every module in this repository on this one (Linux), with the race
# detector.
# Whatever a test needs beyond Go (redis-server for the Redis engine) it
# installs and starts itself; see scripts/redis.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/redis.sh

modules=(. redisstate bench adapters/fiberstorage adapters/httpratecounter adapters/limiterstore adapters/scsstore examples/fiber-prefork)

# The nested modules build in the workspace (go.work), against this
# checkout's root module; the root module builds alone, with the versions of
# its own go.mod, as a user's build gets them.
root=$PWD
gowork() { if [ "$1" = . ]; then echo off; else echo "$root/go.work"; fi; }

# The root module claims, on its go line, the oldest Go it builds with:
# check that Go builds and vets it (the toolchain comes from the module
# proxy, once).
oldest=$(sed -n 's/^go //p' go.mod)
echo "== go vet . with go$oldest"
GOWORK=off GOTOOLCHAIN=go$oldest go vet ./...

# Every module but the benchmark tool (a Linux tool: raw sockets, /proc)
# must build and vet on the systems Go developers work on; the tests below
# run on Linux.
targets=(darwin/amd64 darwin/arm64 freebsd/amd64 windows/amd64 linux/arm64)
for m in "${modules[@]}"; do
	[ "$m" = bench ] && continue
	for t in "${targets[@]}"; do
		echo "== go vet $m for $t"
		(cd "$m" && GOWORK=$(gowork "$m") GOOS=${t%/*} GOARCH=${t#*/} go vet ./...)
	done
done

test_module() { (export GOWORK=$(gowork "$1") && cd "$1" && go vet ./... && go test -race -count=1 -timeout 10m ./...); }

# Fiber's middleware tests, which adapters/fiberstorage runs, spend most of
# their minute asleep: they run beside the others, and report at the end.
beside=adapters/fiberstorage
log=$(mktemp)
test_module "$beside" >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
for m in "${modules[@]}"; do
	[ "$m" = "$beside" ] && continue
	echo "== go test $m"
	test_module "$m"
done
# The race detector's memory takes page faults of its own, which would hide
# the journal's: the test that counts those runs without it.
echo "== go test ./internal/journal without the race detector"
GOWORK=off go test -count=1 -run TestAppendsRarelyFault ./internal/journal
echo "== go test $beside"
status=0
wait "$pid" || status=$?
cat "$log"
exit "$status"
