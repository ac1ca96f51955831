package client

import (
	"errors"
	"testing"

	"github.com/takodb/tako/internal/wire"
)

// TestAStampedWriteThatANodeFindsStaleFails: a write the client stamped,
// then handed to a node to coordinate after the nodes refused the
// client's configuration, that meets a newer version was stored nowhere:
// it fails (its outcome unknown) rather than being acknowledged on the
// strength of a version that may be a failed write's (simulator seed 3819
// of the 2026-12-03 long run: the version was lost with a disk, and the
// acknowledged write had never been stored). A write with the caller's own
// timestamp is Superseded, as always.
func TestAStampedWriteThatANodeFindsStaleFails(t *testing.T) {
	stale := &wire.Response{Op: wire.OpPutResponse, Outcome: wire.OutcomeStale, Current: wire.Record{Timestamp: 200}}
	if res, err := forwardedResult(stale, wire.Record{Timestamp: 100}, true); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a stamped write that met a newer version: %+v, %v; want ErrUnavailable", res, err)
	}
	if res, err := forwardedResult(stale, wire.Record{Timestamp: 100}, false); err != nil || !res.Superseded || res.Timestamp != 200 {
		t.Fatalf("a write with the caller's timestamp that met a newer version: %+v, %v; want Superseded at 200", res, err)
	}
	written := &wire.Response{Op: wire.OpPutResponse, Outcome: wire.OutcomeWritten, Current: wire.Record{Timestamp: 100}}
	if res, err := forwardedResult(written, wire.Record{Timestamp: 100}, true); err != nil || res.Timestamp != 100 {
		t.Fatalf("a stamped write written: %+v, %v", res, err)
	}
}
