package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takodb/tako/internal/hlc"
)

// The doors through which a timestamp comes into a node. Every one holds
// it to the same rule, hlc.Check: 1 ≤ ts ≤ the node's now +
// max_timestamp_ahead; what breaks it is refused and counted by door in
// tako_timestamps_refused_total.
const (
	// doorHTTP: a client's X-Timestamp on the node's HTTP port.
	doorHTTP = "http"
	// doorBinary: a client's timestamp in an OpPut on the binary port
	// (the proxy and the Go client).
	doorBinary = "binary"
	// doorReplica: a peer's OpReplicaPut: its writes, read repair,
	// background repair's pushes and garbage collection's hand-offs.
	doorReplica = "replica"
	// doorRepair: a record background repair fetched from a peer.
	doorRepair = "repair"
	// doorRefill: a record a refill streamed from a peer.
	doorRefill = "refill"
	// doorReadThrough: a record a recovering node read through from a
	// peer, before it keeps it.
	doorReadThrough = "read_through"
	// doorStored: a record already stored somewhere that breaks the rule
	// (from before the rule, or from a peer whose clock was wrong), seen
	// by a read or a write: counted, served as it is, never spread; only
	// tako purge removes it.
	doorStored = "stored"
)

func newTimestampsRefused() *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tako_timestamps_refused_total",
		Help: "Timestamps that broke the rule 1 <= ts <= now + max_timestamp_ahead, by door: http, binary (a client's), replica, repair, refill, read_through (a peer's), stored (a record already stored, seen by a read or a write; tako where shows it, tako purge removes it).",
	}, []string{"door"})
}

// admit holds ts, come in through door, to the timestamp rule: nil when it
// follows it, else the rule's error, counted.
func (n *Node) admit(door string, ts int64) error {
	err := hlc.Check(ts, n.clock.Wall(), n.settings(n.cfg.Load()).MaxTimestampAhead)
	if err != nil {
		n.metrics.timestampsRefused.WithLabelValues(door).Inc()
	}
	return err
}
