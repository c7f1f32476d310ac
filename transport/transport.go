// Package transport is what sharedstate and its engines say to each other,
// as database/sql/driver is for database/sql: the Engine interface an engine
// implements, the operations it performs (Op, each with the fields of
// Request and Response it uses), the statuses it answers with, and the
// entries of a range. An engine author imports this package; a user of
// sharedstate never needs to.
//
// The embedded engine carries the same Requests and Responses between
// processes; how (frames, connections, the handshake, sockets) is its own
// business, kept in an internal package.
package transport
