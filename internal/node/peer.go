package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coord"
	"github.com/takodb/tako/internal/health"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/store"
	"github.com/takodb/tako/internal/wire"
)

// errPeerDown is what a call to a peer that is marked down answers at once.
var errPeerDown = errors.New("node: peer is down (skipped until a probe answers)")

// remoteReplica is a peer's store, reached over the binary protocol with
// the peer's internal operations.
type remoteReplica struct {
	n      *Node
	node   config.Node
	health *health.Peer
	// force sends calls even while the peer is marked down or its address
	// is in dial backoff, one at a time (health.Peer.Urgent: the others
	// wait for it, and go ahead when it found the peer up): the request
	// cannot make its quorum without it.
	force bool
	// waitJoining, with force, makes a call to a peer that is joining (a
	// configuration just named it) dial it again while it refuses, up to
	// the request's timeout, for every request that needs it: set for the
	// requests of clients, not for background repair, which finds the
	// peer at its next pass.
	waitJoining bool
}

func (n *Node) remote(nd config.Node) remoteReplica {
	return remoteReplica{n: n, node: nd, health: n.peers.Peer(nd.ID)}
}

func (r remoteReplica) call(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	call := r.n.pool.Call
	switch {
	case r.force && r.waitJoining && r.health.Joining():
		// A configuration just named the peer: it may be starting.
		call = func(ctx context.Context, addr string, req *wire.Request) (*wire.Response, error) {
			return r.n.pool.CallPatiently(ctx, addr, req, health.JoinRetry, r.health.Joining)
		}
	case r.force:
		switch r.health.Urgent(ctx) {
		case health.UrgentMine:
			defer r.health.EndUrgent()
			call = r.n.pool.CallNow
		case health.UrgentRefused:
			r.n.metrics.peerCalls.WithLabelValues(r.node.ID, "skipped").Inc()
			return nil, fmt.Errorf("replica %s at %s: %w (%w)", r.node.ID, r.node.BinaryAddr(), errPeerDown, coord.ErrNotSent)
		}
	case !r.health.Allow():
		r.n.metrics.peerCalls.WithLabelValues(r.node.ID, "skipped").Inc()
		return nil, fmt.Errorf("replica %s at %s: %w (%w)", r.node.ID, r.node.BinaryAddr(), errPeerDown, coord.ErrNotSent)
	}
	resp, err := call(ctx, r.node.BinaryAddr(), req)
	if err != nil {
		if wire.PeerFault(err) {
			if r.health.Failure() {
				r.n.logger.Warn("peer marked down: it did not answer in time; calls skip it until a probe answers",
					"peer", r.node.ID, "addr", r.node.BinaryAddr(), "err", err)
			}
			r.n.metrics.peerCalls.WithLabelValues(r.node.ID, "failed").Inc()
		} else {
			r.n.metrics.peerCalls.WithLabelValues(r.node.ID, "error").Inc()
		}
		if errors.Is(err, wire.ErrUnreachable) {
			err = fmt.Errorf("%w (%w)", err, coord.ErrNotSent)
		}
		return nil, fmt.Errorf("replica %s at %s: %w", r.node.ID, r.node.BinaryAddr(), err)
	}
	if r.health.Success() {
		_, since := r.health.Up()
		r.n.logger.Info("peer answers again", "peer", r.node.ID, "addr", r.node.BinaryAddr(), "down_for", time.Since(since).Round(time.Millisecond))
	}
	r.n.metrics.peerCalls.WithLabelValues(r.node.ID, "ok").Inc()
	return resp, nil
}

func (r remoteReplica) Get(ctx context.Context, key []byte) (store.Record, bool, error) {
	resp, err := r.call(ctx, &wire.Request{Op: wire.OpReplicaGet, Key: key})
	if err != nil {
		return store.Record{}, false, err
	}
	return resp.Record, resp.Found, nil
}

// Stat asks the peer for its record of key without the value
// (OpReplicaStat); a peer of a version without it is asked for the whole
// record.
func (r remoteReplica) Stat(ctx context.Context, key []byte) (store.Record, bool, error) {
	resp, err := r.call(ctx, &wire.Request{Op: wire.OpReplicaStat, Key: key})
	if errors.Is(err, wire.ErrUnknownOp) {
		rec, found, err := r.Get(ctx, key)
		rec.Value = nil
		return rec, found, err
	}
	if err != nil {
		return store.Record{}, false, err
	}
	return resp.Record, resp.Found, nil
}

// getLocal asks the peer for its own record of key, without a
// read-through (OpReplicaGetLocal); a recovering peer that lacks it
// answers CodeUnavailable.
func (r remoteReplica) getLocal(ctx context.Context, key []byte) (store.Record, bool, error) {
	resp, err := r.call(ctx, &wire.Request{Op: wire.OpReplicaGetLocal, Key: key})
	if err != nil {
		return store.Record{}, false, err
	}
	return resp.Record, resp.Found, nil
}

func (r remoteReplica) Put(ctx context.Context, key []byte, rec store.Record) (store.PutResult, error) {
	resp, err := r.call(ctx, &wire.Request{Op: wire.OpReplicaPut, Key: key, Record: rec})
	if err != nil {
		return store.PutResult{}, err
	}
	res, err := resp.Outcome.PutResult(resp.Current)
	if err != nil {
		return store.PutResult{}, fmt.Errorf("replica %s: %w", r.node.ID, err)
	}
	return res, nil
}

// wireHandler serves the binary port: the internal operations touch only the
// local store; the public ones coordinate like the HTTP API does.
type wireHandler struct{ n *Node }

func (h wireHandler) Handle(ctx context.Context, req *wire.Request) *wire.Response {
	n := h.n
	if req.Op != wire.OpPing && !n.Ready() {
		return &wire.Response{Err: &wire.Error{Code: wire.CodeUnavailable, Message: fmt.Sprintf("node %s is not in its current configuration: not serving", n.id)}}
	}
	if req.Op != req.Op.Unfenced() {
		if since := n.placementSince.Load(); req.Epoch < since {
			n.metrics.fenced.Inc()
			return &wire.Response{Err: &wire.Error{Code: wire.CodeStaleConfig, Message: fmt.Sprintf(
				"node %s places keys by the configuration of epoch %d or later; this request was placed by epoch %d: learn the newer configuration, or let a node coordinate it", n.id, since, req.Epoch)}}
		}
		req.Op = req.Op.Unfenced()
	}
	switch req.Op {
	case wire.OpPing:
		return &wire.Response{Op: wire.OpPong}
	case wire.OpReplicaGet:
		rec, found, err := n.local.Get(ctx, req.Key)
		if err != nil {
			return errorResponse(err)
		}
		return &wire.Response{Op: wire.OpRecordResponse, Found: found, Record: rec}
	case wire.OpReplicaStat:
		rec, found, err := n.local.Stat(ctx, req.Key)
		if err != nil {
			return errorResponse(err)
		}
		return &wire.Response{Op: wire.OpRecordResponse, Found: found, Record: rec}
	case wire.OpReplicaGetLocal:
		rec, found, err := n.local.getLocal(ctx, req.Key)
		if err != nil {
			return errorResponse(err)
		}
		return &wire.Response{Op: wire.OpRecordResponse, Found: found, Record: rec}
	case wire.OpRangeStream:
		return n.serveRangeStream(ctx, req)
	case wire.OpReplicaPurge:
		removed, err := n.purgeLocal(ctx, req.Key)
		if err != nil {
			return errorResponse(err)
		}
		return &wire.Response{Op: wire.OpRecordResponse, Found: removed}
	case wire.OpPurge:
		res, err := n.Purge(ctx, req.Key)
		if err != nil {
			return errorResponse(err)
		}
		return &wire.Response{Op: wire.OpRecordResponse, Found: res.Held}
	case wire.OpReplicaPut:
		rec := req.Record
		if err := n.admit(doorReplica, rec.Timestamp); err != nil {
			return errorResponse(fmt.Errorf("replica put: %w: %w", err, httpapi.ErrBadRequest))
		}
		res, err := n.local.Put(ctx, req.Key, rec)
		if err != nil {
			return errorResponse(err)
		}
		return &wire.Response{Op: wire.OpPutResponse, Outcome: wire.OutcomeOf(res.Outcome), Current: res.Current}
	case wire.OpDigest:
		resp := &wire.Response{Op: wire.OpDigestResponse, Digests: make([]wire.RangeDigest, len(req.Ranges))}
		for i, r := range req.Ranges {
			d, err := n.store.RangeDigest(ctx, r.Lo, r.Hi)
			if err != nil {
				return errorResponse(err)
			}
			resp.Digests[i] = wire.RangeDigest{XOR: d.XOR, Count: d.Count}
		}
		return resp
	case wire.OpRangeSummary:
		resp := &wire.Response{Op: wire.OpRangeSummaryResponse}
		r := req.Ranges[0]
		err := n.store.Fingerprints(ctx, r.Lo, r.Hi, func(key []byte, fp uint64, ts int64) error {
			if uint32(len(resp.Entries)) == req.Limit {
				resp.Truncated = true
				return errSummaryFull
			}
			resp.Entries = append(resp.Entries, wire.SummaryEntry{Key: append([]byte(nil), key...), Fingerprint: fp, Timestamp: ts})
			return nil
		})
		if err != nil && !errors.Is(err, errSummaryFull) {
			return errorResponse(err)
		}
		return resp
	case wire.OpGet:
		rec, found, err := n.readRecord(ctx, req.Key)
		if err != nil {
			return errorResponse(err)
		}
		return &wire.Response{Op: wire.OpRecordResponse, Found: found, Record: rec}
	case wire.OpPut:
		if size := int64(len(req.Record.Value)); size > n.MaxValueSize() {
			return &wire.Response{Err: &wire.Error{Code: wire.CodeTooLarge, Message: fmt.Sprintf("value of %d bytes is larger than max_value_size (%d bytes)", size, n.MaxValueSize())}}
		}
		res, err := n.writeRecord(ctx, doorBinary, req.Key, req.Record)
		if err != nil {
			return errorResponse(err)
		}
		if res.Superseded {
			return &wire.Response{Op: wire.OpPutResponse, Outcome: wire.OutcomeStale, Current: wire.Record{Timestamp: res.Timestamp}}
		}
		cur := req.Record
		cur.Timestamp = res.Timestamp
		return &wire.Response{Op: wire.OpPutResponse, Outcome: wire.OutcomeWritten, Current: cur}
	}
	return &wire.Response{Err: &wire.Error{Code: wire.CodeUnknownOp, Message: fmt.Sprintf("op %v is not served here", req.Op)}}
}

// errorResponse maps an error to the wire's error codes.
func errorResponse(err error) *wire.Response {
	code := wire.CodeInternal
	switch {
	case errors.Is(err, httpapi.ErrInsufficientStorage), errors.Is(err, store.ErrNoSpace):
		code = wire.CodeInsufficientStorage
	case errors.Is(err, store.ErrFailed):
		// The node stops (Run): its peers skip it at once.
		code = wire.CodeShuttingDown
	case errors.Is(err, httpapi.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, errRecovering):
		code = wire.CodeUnavailable
	case errors.Is(err, httpapi.ErrBadRequest), errors.Is(err, store.ErrEmptyKey):
		code = wire.CodeBadRequest
	case errors.Is(err, store.ErrClosed), errors.Is(err, errShuttingDown):
		code = wire.CodeShuttingDown
	}
	return &wire.Response{Err: &wire.Error{Code: code, Message: err.Error()}}
}

// errSummaryFull stops a range summary at its limit.
var errSummaryFull = errors.New("node: summary full")

// errShuttingDown is returned for work refused because Close has begun.
var errShuttingDown = errors.New("node: shutting down")

// listen binds addr for the named purpose, with an error an operator can act on.
func (n *Node) listen(purpose, addr string) (net.Listener, error) {
	listen := func(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
	if n.network != nil {
		listen = n.network.Listen
	}
	ln, err := listen(addr)
	if err != nil {
		return nil, fmt.Errorf("node %s: listening for %s on %s: %w", n.id, purpose, addr, err)
	}
	return ln, nil
}

// peerIDs returns the ids of nodes, but self's.
func peerIDs(nodes []config.Node, self string) []string {
	var ids []string
	for _, nd := range nodes {
		if nd.ID != self {
			ids = append(ids, nd.ID)
		}
	}
	return ids
}
