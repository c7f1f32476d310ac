module github.com/sharedstate/sharedstate

go 1.24.0

require (
	github.com/anishathalye/porcupine v1.3.1
	github.com/vmihailenco/msgpack/v5 v5.4.1
	golang.org/x/sys v0.41.0
)

require github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
