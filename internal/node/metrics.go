package node

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/takodb/tako/internal/coordmetrics"
	"github.com/takodb/tako/internal/health"
	"github.com/takodb/tako/internal/store"
)

// nodeMetrics are the node's own metrics; the HTTP handler adds its own.
type nodeMetrics struct {
	// coordinated counts what the requests the node coordinates did.
	coordinated *coordmetrics.Metrics
	peerCalls   *prometheus.CounterVec
	// fenced counts fenced requests refused as placed by an older
	// configuration.
	fenced prometheus.Counter

	repairPasses   prometheus.Counter
	repairLastPass prometheus.Gauge
	repairProgress prometheus.Gauge
	repairRanges   *prometheus.CounterVec
	repairKeys     *prometheus.CounterVec
	repairMessages prometheus.Counter
	repairBytes    *prometheus.CounterVec
	// repairItemErrors counts records of a batch that a peer refused.
	repairItemErrors prometheus.Counter
	// repairSyncedEpoch is read by the coordinator: keep its name.
	repairSyncedEpoch prometheus.Gauge
	gcDropped         *prometheus.CounterVec
	refill            recoveryMetrics
	timestampsRefused *prometheus.CounterVec
}

func newNodeMetrics(reg prometheus.Registerer, st *store.Store, peers *health.Set, unreachable func(peer string) bool) *nodeMetrics {
	m := &nodeMetrics{
		refill:            newRecoveryMetrics(),
		timestampsRefused: newTimestampsRefused(),
		peerCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tako_peer_calls_total",
			Help: "Calls to peer replicas over the binary protocol, by peer and outcome (ok; failed: the peer did not answer and is marked down; skipped: not sent because the peer is down; error: the peer refused the request).",
		}, []string{"peer", "outcome"}),
	}
	m.repairPasses = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tako_repair_passes_total", Help: "Background repair passes finished.",
	})
	m.repairLastPass = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tako_repair_last_pass_seconds", Help: "How long the last background repair pass took.",
	})
	m.repairProgress = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tako_repair_pass_progress_ratio", Help: "Share of the shared hash ranges the current repair pass has compared (1 when it is done).",
	})
	m.repairRanges = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tako_repair_ranges_total", Help: "Hash ranges background repair compared with a peer, and those whose digests differed.",
	}, []string{"result"})
	m.repairKeys = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tako_repair_keys_total", Help: "Records background repair sent to peers or received from them.",
	}, []string{"direction"})
	m.repairItemErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tako_repair_item_errors_total", Help: "Records that background repair or garbage collection could not send to a peer or fetch from it (the peer refused them one by one); the pass that met them is not clean, so it gives no credit to garbage collection or to a migration.",
	})
	m.repairMessages = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tako_repair_messages_total", Help: "Binary protocol calls made by background repair.",
	})
	m.repairSyncedEpoch = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "tako_repair_synced_epoch",
		Help: "Epoch of the configuration under which this node last finished a clean repair pass with every peer it shares keys with (-1: none yet). The coordinator compares it with the epoch it serves to tell whether a migration has converged.",
	})
	m.repairSyncedEpoch.Set(-1)
	m.gcDropped = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tako_gc_records_dropped_total",
		Help: "Records garbage collection dropped once every current replica confirmed holding them: not_owned (keys this node no longer replicates), tombstone (deletes past tombstone_grace), expired (values expired for longer than tombstone_grace).",
	}, []string{"kind"})
	m.fenced = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tako_fenced_requests_refused_total",
		Help: "Requests of a Go client or proxy that coordinates its own requests refused because their configuration placed keys by a layout older than this node's (CodeStaleConfig): the client lets a node coordinate them instead, and follows the new configuration. Many over a long time: a client that does not learn new configurations.",
	})
	reg.MustRegister(m.gcDropped, m.timestampsRefused, m.fenced)
	reg.MustRegister(m.repairSyncedEpoch)
	m.repairBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tako_repair_bytes_total",
		Help: "Bytes background repair exchanged with peers (protocol payload and frame headers), by direction (sent, received); added at the end of each pass.",
	}, []string{"direction"})
	reg.MustRegister(m.repairPasses, m.repairLastPass, m.repairProgress, m.repairRanges, m.repairKeys, m.repairMessages, m.repairBytes, m.repairItemErrors)
	m.coordinated = coordmetrics.New(reg, "node")
	reg.MustRegister(m.peerCalls, peerUpCollector{peers, unreachable},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_store_keys",
			Help: "Records in the local store (approximate), tombstones included.",
		}, func() float64 { return float64(st.Stats().Keys) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_store_disk_bytes",
			Help: "Bytes the local store occupies on disk.",
		}, func() float64 { return float64(st.Stats().DiskBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tako_store_write_stalls_total",
			Help: "Times the store stalled writes because its memtables or level 0 were full (a refill waits for them to end).",
		}, func() float64 { return float64(st.Stats().WriteStalls) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tako_store_write_stall_seconds_total",
			Help: "Time the store's writes spent stalled.",
		}, func() float64 { return st.Stats().WriteStalled.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_store_free_bytes",
			Help: "Free space on the store's file system when the store last looked (0: it cannot tell).",
		}, func() float64 { return float64(st.Stats().FreeBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_store_low_space",
			Help: "1 while the store's free space is below its reserve (-min-free): it refuses writes (507) and serves reads, until space is freed.",
		}, func() float64 {
			if st.Stats().LowSpace {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tako_store_writes_refused_total",
			Help: "Writes the store refused because they would have left less free space than its reserve (-min-free).",
		}, func() float64 { return float64(st.Stats().WritesRefused) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_store_damaged_files",
			Help: "Files of the store that failed their checksum since the node started: reads of their records fail on this node (never wrong bytes); see docs/operations.md.",
		}, func() float64 { return float64(st.Stats().DamagedFiles) }),
	)
	return m
}

var peerUpDesc = prometheus.NewDesc("tako_peer_up",
	"Whether a peer replica answers (1), or is marked down or refuses connections (0), as this node last saw it.", []string{"peer"}, nil)

// peerUpCollector reports the health of every peer the node has called:
// down when marked down (it timed out) or when its last dial failed.
type peerUpCollector struct {
	peers       *health.Set
	unreachable func(peer string) bool
}

func (c peerUpCollector) Describe(ch chan<- *prometheus.Desc) { ch <- peerUpDesc }

func (c peerUpCollector) Collect(ch chan<- prometheus.Metric) {
	c.peers.Each(func(name string, p *health.Peer) {
		v := 0.0
		if up, _ := p.Up(); up && !c.unreachable(name) {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(peerUpDesc, prometheus.GaugeValue, v, name)
	})
}
