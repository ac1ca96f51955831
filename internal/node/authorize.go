package node

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/wire"
)

// wireRole is the role a token needs for a request of op on the binary
// port: reading a key, through the node (Get) or from its store alone
// (ReplicaGet, ReplicaGetLocal, what `tako where` asks; FencedGet and
// FencedStat, what a Go client that coordinates its own requests asks),
// needs read; writing a key through the node (Put), or to its store alone
// as a coordinating Go client does (FencedPut: held to the same timestamp
// rule as Put, it can do nothing that a Put with the client's timestamp
// cannot), needs write; the operations between nodes (ReplicaPut, which
// writes one replica past the quorum and any fence, the anti-entropy
// Digest and RangeSummary, and RangeStream, which reads whole ranges)
// need admin, as do an operator's Purge (and the ReplicaPurge it sends)
// and ops this version does not know. Presenting a token (Auth) needs
// only that it is listed.
func wireRole(op wire.Op) auth.Role {
	switch op {
	case wire.OpAuth, wire.OpGet, wire.OpReplicaGet, wire.OpReplicaGetLocal, wire.OpReplicaStat, wire.OpFencedGet, wire.OpFencedStat:
		return auth.Read
	case wire.OpPut, wire.OpFencedPut:
		return auth.Write
	}
	return auth.Admin
}

// authorizeWire is the binary port's wire.ServerOptions.Authorize: without
// an auth section every request is served; with one, a connection must
// have presented a listed token (OpAuth) of the role the op needs. It
// reads the configuration at each request, so a token removed from the
// configuration stops working at once, on open connections too.
func (n *Node) authorizeWire(token string, op wire.Op) *wire.Error {
	tokens := n.cfg.Load().Auth
	if tokens == nil {
		return nil
	}
	if token == "" {
		return &wire.Error{Code: wire.CodeUnauthorized, Message: "this cluster has an auth section: present a token (client.Options.Token or $TAKO_TOKEN; -token-file for nodes and proxies)"}
	}
	tok, ok := tokens.Lookup(token)
	if !ok {
		return &wire.Error{Code: wire.CodeUnauthorized, Message: "unknown token"}
	}
	if need := wireRole(op); tok.Role < need {
		return &wire.Error{Code: wire.CodeForbidden, Message: "token " + quote(tok.Name) + " has the role " + tok.Role.String() + "; " + op.String() + " needs " + need.String()}
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }

// wireCollectors returns the metrics of the binary port's limits and
// refusals, read from the wire server that Run starts (zero before).
func wireCollectors(srv *atomic.Pointer[wire.Server]) []prometheus.Collector {
	stat := func(get func(wire.Stats) uint64) func() float64 {
		return func() float64 {
			s := srv.Load()
			if s == nil {
				return 0
			}
			return float64(get(s.Stats()))
		}
	}
	counter := func(opts prometheus.CounterOpts, get func(wire.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(opts, stat(get))
	}
	return []prometheus.Collector{
		counter(prometheus.CounterOpts{Name: "tako_wire_throttled_total",
			Help: "Times the binary port stopped reading a connection that had max_requests_per_connection requests under way, until one finished."},
			func(s wire.Stats) uint64 { return s.Throttled }),
		counter(prometheus.CounterOpts{Name: "tako_wire_write_timeouts_total",
			Help: "Binary-port connections closed because the peer did not take its answers within the write timeout (30 s)."},
			func(s wire.Stats) uint64 { return s.WriteTimeouts }),
		counter(prometheus.CounterOpts{Name: "tako_wire_read_timeouts_total",
			Help: "Binary-port connections closed because the peer sent part of a frame and then nothing for the read timeout (30 s)."},
			func(s wire.Stats) uint64 { return s.ReadTimeouts }),
		counter(prometheus.CounterOpts{Name: "tako_wire_idle_timeouts_total",
			Help: "Binary-port connections closed because they sent nothing for the idle timeout (5 min) with none of their requests under way."},
			func(s wire.Stats) uint64 { return s.IdleTimeouts }),
		counter(prometheus.CounterOpts{Name: "tako_wire_handshake_failures_total",
			Help: "Binary-port connections closed because their TLS or protocol handshake failed (no or a foreign certificate, not Tako's protocol, too slow)."},
			func(s wire.Stats) uint64 { return s.HandshakeFailures }),
		counter(prometheus.CounterOpts{Name: "tako_wire_protocol_errors_total",
			Help: "Binary-port connections closed because the peer broke the protocol after the handshake (a frame over 64 KiB before a token included)."},
			func(s wire.Stats) uint64 { return s.ProtocolErrors }),
		counter(prometheus.CounterOpts{Name: "tako_wire_refused_total",
			Help: "Binary-port requests refused for their token (none, unknown, or of a lesser role), tokens presented included."},
			func(s wire.Stats) uint64 { return s.Refused }),
		counter(prometheus.CounterOpts{Name: "tako_wire_budget_refused_total",
			Help: "Binary-port requests answered CodeOverloaded because their frame did not fit in limits.max_bytes_in_flight within 1 s."},
			func(s wire.Stats) uint64 { return s.OverBudget }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tako_wire_bytes_reserved",
			Help: "Bytes of request frames that the binary port holds reserved in limits.max_bytes_in_flight."},
			func() float64 {
				if s := srv.Load(); s != nil {
					return float64(s.Stats().BytesReserved)
				}
				return 0
			}),
	}
}
