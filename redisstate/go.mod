module github.com/sharedstate/sharedstate/redisstate

go 1.24.0

require (
	github.com/redis/go-redis/v9 v9.22.0
	github.com/sharedstate/sharedstate v0.1.0
	github.com/vmihailenco/msgpack/v5 v5.4.1
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.41.0 // indirect
)
