package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takodb/tako/internal/store"
)

// nodeMetrics are the node's own metrics; the HTTP handler adds its own.
type nodeMetrics struct {
	writes        *prometheus.CounterVec
	reads         *prometheus.CounterVec
	readRepairs   *prometheus.CounterVec
	quorumLatency *prometheus.HistogramVec
}

func newNodeMetrics(reg prometheus.Registerer, st *store.Store) *nodeMetrics {
	m := &nodeMetrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_coordinated_writes_total",
			Help: "Writes and deletes this node coordinated, by outcome (ok, superseded, unavailable: the write quorum was not reached).",
		}, []string{"outcome"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_coordinated_reads_total",
			Help: "Reads this node coordinated, by outcome (ok, unavailable: the read quorum was not reached).",
		}, []string{"outcome"}),
		readRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_read_repairs_total",
			Help: "Records written back to a replica that was behind, by outcome.",
		}, []string{"outcome"}),
		quorumLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tako_quorum_duration_seconds",
			Help:    "Time from sending a request to the replicas to reaching its quorum, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"op"}),
	}
	reg.MustRegister(m.writes, m.reads, m.readRepairs, m.quorumLatency,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_store_keys",
			Help: "Records in the local store (approximate), tombstones included.",
		}, func() float64 { return float64(st.Stats().Keys) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_store_disk_bytes",
			Help: "Bytes the local store occupies on disk.",
		}, func() float64 { return float64(st.Stats().DiskBytes) }),
	)
	return m
}
