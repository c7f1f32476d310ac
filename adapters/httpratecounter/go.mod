module github.com/sharedstate/sharedstate/adapters/httpratecounter

go 1.24.0

require (
	github.com/go-chi/httprate v0.16.1
	github.com/sharedstate/sharedstate v0.1.0
)

require (
	github.com/klauspost/cpuid/v2 v2.2.10 // indirect
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	github.com/zeebo/xxh3 v1.0.2 // indirect
	golang.org/x/sys v0.41.0 // indirect
)
