// Package wire is Tako's binary protocol: between nodes, and between proxies
// or clients and nodes. It moves typed messages over TCP (or TLS) and calls a
// Handler for each request; it knows nothing of stores, rings or quorums, and
// imports no other Tako package. docs/protocol.md specifies the same format
// for implementers in other languages.
//
// # Use
//
// A node serves with a Server:
//
//	srv := wire.NewServer(wire.ServerOptions{Handler: node, Logger: logger})
//	go srv.Serve(ln)
//	...
//	srv.Shutdown(ctx)
//
// and calls its peers through a Pool, which holds one pipelined connection
// per address and backs off from addresses that fail:
//
//	pool := wire.NewPool(wire.DialOptions{})
//	resp, err := pool.Call(ctx, "10.0.0.2:5712", &wire.Request{Op: wire.OpReplicaGet, Key: key})
//
// Call returns an error response as an *Error: errors.Is(err,
// wire.ErrUnavailable) and the like test its code.
//
// # Handshake
//
// A client opens a connection by sending 8 bytes; the server answers with 8
// bytes of the same layout:
//
//	+-----+-----+-----+-----+----------+----------+
//	| 'T' | 'A' | 'K' | 'O' | version  | flags    |
//	|          magic        | uint16   | uint16   |
//	+-----+-----+-----+-----+----------+----------+
//	0                       4          6          8
//
// All integers in this package's formats are big-endian. The client sends
// the highest version it speaks (ProtocolVersion, 1) and flags 0; flags are
// for optional features, of which version 1 defines none. The server answers
// with the version the connection will speak, the lower of the client's and
// its own, and with the flags it grants (0). When that version is below the
// lowest it speaks (only 0, today), it answers its own version followed by an
// error frame (request id 0, CodeBadRequest) naming the problem, and closes
// the connection. When the first 8 bytes do not start with "TAKO" (an HTTP
// request, a port scanner) the server closes the connection without an
// answer, and logs the peer and the bytes. A server also closes connections
// that do not complete the handshake within its HandshakeTimeout.
//
// # Frames
//
// After the handshake, each side sends frames:
//
//	+----------------+------+------------------------+-------------------+
//	| length         | op   | request id             | body              |
//	| uint32         | uint8| uint64                 | length - 9 bytes  |
//	+----------------+------+------------------------+-------------------+
//	0                4      5                        13                  4 + length
//
// length counts the bytes after itself: at least 9, at most the receiver's
// MaxFrameSize (DefaultMaxFrameSize, 65 MiB, unless configured). The op says
// what the body is (see Op): requests are 0x01-0x7f, responses 0x80-0xff. A
// response carries the request id of its request; responses come in any
// order, so a client may have many requests in flight on one connection. A
// client numbers its requests from 1, without reuse; request id 0 is for
// error frames about the whole connection, from the server.
//
// Bodies are built from these parts:
//
//	key:     | length uint16 | key bytes |                           length <= MaxKeySize (4096)
//	record:  | flags uint8 | timestamp int64 | [expiry int64] | length uint32 | value bytes |
//	         flags bit 0: tombstone; bit 1: the value expires, and its expiry
//	         (microseconds since the Unix epoch, never 0) follows the
//	         timestamp; bits 2-7: zero. A tombstone has length 0 and no
//	         expiry. timestamp: microseconds since the Unix epoch. A record
//	         without expiry is encoded as before bit 1 existed; a peer that
//	         predates it refuses one with an expiry as a protocol error, so
//	         every node is upgraded before clients write with a TTL.
//	batch:   | count uint16 | count × item |                     count <= MaxBatch (1024)
//	item:    | length uint32 | op uint8 | body |                 length counts op and body
//	error:   | code uint16 | length uint16 | message bytes |     length <= MaxErrorMessageSize (4096)
//	range:   | lo uint32 | hi uint32 |                           hashes lo to hi, inclusive
//	digest:  | xor uint64 | count uint64 |
//	entry:   | key | fingerprint uint64 | timestamp int64 |
//	stream:  | key | record |                                   a stream entry; key length >= 1
//
// The bodies of requests:
//
//	OpReplicaGet      0x01   key                                  → OpRecordResponse
//	OpReplicaPut      0x02   key record                           → OpPutResponse
//	OpGet             0x03   key                                  → OpRecordResponse
//	OpPut             0x04   key record                           → OpPutResponse
//	OpPing            0x05   (empty)                              → OpPong
//	OpBatch           0x06   batch of requests                    → OpBatchResponse
//	OpDigest          0x07   count uint32, count × range          → OpDigestResponse
//	OpRangeSummary    0x08   range, limit uint32                  → OpRangeSummaryResponse
//	OpAuth            0x09   key (the token)                      → OpAuthResponse
//	OpReplicaGetLocal 0x0a   key                                  → OpRecordResponse
//	OpRangeStream     0x0b   range, limit uint32, key (after)     → OpRangeStreamResponse
//	OpPurge           0x0c   key                                  → OpRecordResponse
//	OpReplicaPurge    0x0d   key                                  → OpRecordResponse
//	OpReplicaStat     0x0e   key                                  → OpRecordResponse (no value)
//	OpFencedGet       0x0f   epoch int64, key                     → OpRecordResponse
//	OpFencedStat      0x10   epoch int64, key                     → OpRecordResponse (no value)
//	OpFencedPut       0x11   epoch int64, key record              → OpPutResponse
//
// and of responses:
//
//	OpRecordResponse       0x81   found uint8 (0 or 1), then a record if found is 1
//	OpPutResponse          0x82   outcome uint8 (1 written, 2 unchanged, 3 stale), record (the current one)
//	OpPong                 0x83   (empty)
//	OpBatchResponse        0x84   batch of responses, one per request, in order
//	OpErrorResponse        0x85   error
//	OpDigestResponse       0x86   count uint32, count × digest: one per range, in order
//	OpRangeSummaryResponse 0x87   flags uint8, count uint32, count × entry
//	                              flags bit 0: truncated; bits 1-7: zero.
//	OpAuthResponse         0x88   (empty)
//	OpRangeStreamResponse  0x89   flags uint8, remaining keys uint64, remaining bytes uint64,
//	                              count uint32, count × stream, checksum uint32
//	                              flags bit 0: truncated; bits 1-7: zero. checksum: the
//	                              CRC-32C (Castagnoli) of count and the entries.
//
// Batches do not nest. Any request may be answered by an OpErrorResponse,
// including each request of a batch.
//
// # Anti-entropy
//
// OpDigest and OpRangeSummary let two replicas compare what they hold
// without a round trip per key. A range is of the 32-bit hash space of keys
// (keyhash.Sum, the ring's hash), [lo, hi] with both ends included: {0,
// 0xffffffff} is the whole space, and lo > hi the empty range. For each of its
// ranges, an OpDigest is answered with the digest of the records the peer
// holds (tombstones included) whose keys hash into the range: the XOR of
// their fingerprints and their count, {0, 0} for none. The fingerprint is a
// 64-bit hash of a key and its record, the same on every node; the protocol
// carries it without interpreting it. Where two replicas' digests of a range
// differ, the caller asks each for an OpRangeSummary of it, whose entries are
// the range's records in (hash, key) order (keyhash.Sum of the key, then the
// key's bytes), at most limit of them, with the truncated flag set when the
// range holds more records than the entries; the caller then splits the range
// and asks again. It fetches and sends the differing records with
// OpReplicaGet and OpReplicaPut.
//
// The digest request's count is 1 to MaxRanges (65536), its response's count
// equal to the request's; the summary request's limit is 1 to
// MaxSummaryEntries (65536), its response's count at most the limit.
// Counts above MaxRanges or MaxSummaryEntries are protocol errors; a
// well-formed request of no ranges, or of limit 0 or above
// MaxSummaryEntries, is answered with CodeBadRequest. The frame size limit
// bounds them all: 65536 ranges are a 512 KiB request and a 1 MiB response,
// and a server answers CodeTooLarge instead of a summary beyond the frame
// size, so a handler whose entries would outgrow it stops early, with the
// truncated flag set.
//
// # Refill
//
// OpRangeStream copies a range in bulk, to a node that lost its data or
// gained ranges: its records, values and tombstones included, in (hash, key)
// order, strictly after the key after (from the start of the range when after
// is empty), as many as fit in about limit bytes of keys and values, but at
// least one when any is left; limit 0 asks only for the estimates. The
// truncated flag says that more records follow: the caller asks again with
// after set to the last key it received. Remaining keys and bytes estimate
// what follows, for progress reports only. The checksum, a CRC-32C
// (Castagnoli) of the bytes from count to the end of the entries, guards the
// records, which the receiver stores as they come: a mismatch is a protocol
// error, and the connection is closed. The stream's count is at most
// MaxStreamEntries (65536). While it refills, a node reads keys of its lost
// ranges through from their other replicas with OpReplicaGetLocal, which a
// peer answers from its store alone (CodeUnavailable for a key of a range it
// recovers itself), so that recovering nodes never ask each other in a loop.
//
// # Protocol errors
//
// A receiver checks every length against its limit and against what is left
// of the frame before it allocates anything, and decoders never panic. A
// frame that breaks the format is a protocol error: a length beyond a limit or
// beyond its frame, a stream that ends inside a frame, unknown flag bits, a
// tombstone with a value, bytes left after a body, a nested batch, a request
// with id 0, a response that does not answer its request (of the wrong kind,
// with a digest count other than the request's range count, with more
// summary entries than the request's limit), an OpRangeStreamResponse entry
// with an empty key or whose checksum does not match. The connection that
// carried it is closed, through one exit path that logs and returns a
// *ProtocolError naming the peer and showing the offending bytes. Before
// closing, a server answers the requests already read and sends an error
// frame (request id 0, CodeBadRequest) saying what was wrong. A request of an
// unknown op is not a protocol error, since its frame says how long it is:
// the server answers it with CodeUnknownOp and goes on.
//
// A length field is a claim: a receiver grows a frame's buffer only as its
// bytes arrive (nothing until the first, then 64 KiB, doubling), so a peer
// that announces a large frame and sends little costs little. A server whose
// Authorize requires a token refuses, as a protocol error, any frame longer
// than MaxFrameBeforeAuth from a connection that has not presented one. After
// the handshake a server closes a connection that stalls inside a frame for
// its ReadTimeout, or sends nothing for its IdleTimeout with no request under
// way; a Conn pings when idle (DialOptions.PingInterval) to stay open. A
// server with a Budget (ServerOptions.Budget) reserves a frame's length in
// it once the body's first byte arrives, and then reads the body into one
// buffer of that length; a body that does not fit within the Budget's wait
// is read and dropped, and its request answered with CodeOverloaded, so
// that what all connections hold together stays within the budget.
//
// # Versions
//
// Ops, error codes, outcomes and flag bits are append-only: a number never
// changes meaning. A server answers requests of ops it does not know with
// CodeUnknownOp, and clients must accept error codes they do not know. New
// ops need no new version: OpDigest and OpRangeSummary were appended to
// version 1, and a version 1 server that predates them answers them (alone
// or in a batch) with CodeUnknownOp, which tells a caller that this peer
// cannot take part in anti-entropy. OpAuth, OpReplicaGetLocal and
// OpRangeStream were appended the same way, and such a server answers them
// with CodeUnknownOp too. A change that an old peer would misread (a new
// field in an existing body, a new record flag) needs a new protocol
// version, negotiated in the handshake as above; the next version's server
// keeps speaking version 1 to version 1 clients.
//
// # Connections and goroutines
//
// A Conn owns a writer goroutine, which drains a queue of encoded requests
// into a buffered writer and flushes when the queue is empty, so concurrent
// callers share system calls, and a reader goroutine, which hands each
// response to its caller by request id. A Server owns one goroutine per
// connection, which reads requests and owns that connection's writer and one
// goroutine per request in the Handler (MaxInFlightPerConn at most, beyond
// which it stops reading). Close and Shutdown stop them all.
//
// Shutdown is graceful: the server sends each client an error frame with
// request id 0 and CodeShuttingDown, answers requests that arrive after it
// with CodeShuttingDown, and closes each connection once its requests in
// flight are answered. A Conn that receives that frame takes no new calls
// (Err reports it, so a Pool dials again) but waits for the answers to the
// calls in flight.
package wire
