// Package wire is how the processes of the embedded engine find the owner of
// a state, prove who they are, and exchange transport's Requests and
// Responses with it. It carries operations without knowing what they do:
// the owner's store gives them meaning. It provides
//
//   - frames: a 4-byte big-endian length, then a body whose first byte is the
//     message Kind; frames larger than a hard cap are refused before any of
//     the body is read, and a body is buffered only as its bytes arrive;
//   - messages: fixed structs (Hello, Join, Welcome, Refuse, Request, Response, Event)
//     with a hand-written binary codec. Decoding allocates in proportion to
//     the frame (a count is checked against the bytes left before anything
//     is allocated for it) and has no recursion, so a hostile frame costs a
//     small multiple of its size; values travel as opaque bytes and are never
//     decoded here;
//   - Conn: one connection multiplexed by request id, whose writes are batched
//     into as few write(2) calls as the load allows (auto-pipelining);
//   - the handshake: peer credentials (SO_PEERCRED), protocol version and an
//     optional HMAC challenge over a shared secret;
//   - sockets: only the holder of the state's lock file (package
//     internal/statedir) unlinks and binds the socket.
package wire

// Version is the protocol version spoken by this package. A peer speaking
// another version is refused during the handshake with transport.StatusVersionMismatch.
const Version = 2

// DefaultMaxFrame is the default cap on a frame's size, header excluded.
const DefaultMaxFrame = 4 << 20
