module github.com/sharedstate/sharedstate/adapters/scsstore

go 1.24.0

require (
	github.com/alexedwards/scs/v2 v2.9.0
	github.com/sharedstate/sharedstate v0.1.0
)

require (
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	golang.org/x/sys v0.41.0 // indirect
)
