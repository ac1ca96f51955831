package coordinator

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"sync"
	"time"

	"github.com/takodb/tako/internal/config"
)

const (
	// defaultStatusInterval is how often the Server scrapes the nodes for
	// its status when ServerOptions.StatusInterval is zero.
	defaultStatusInterval = 2 * time.Second
	// nodeScrapeTimeout is how long a node's /metrics may take to answer
	// before the node counts as down.
	nodeScrapeTimeout = time.Second
)

// The metrics of a node's /metrics that the status reads.
const (
	metricBuildInfo      = "tako_build_info"
	metricStartTime      = "process_start_time_seconds"
	metricKeys           = "tako_store_keys"
	metricDiskBytes      = "tako_store_disk_bytes"
	metricReads          = "tako_coordinated_reads_total"
	metricWrites         = "tako_coordinated_writes_total"
	metricHTTPRequests   = "tako_http_requests_total"
	metricRepairProgress = "tako_repair_pass_progress_ratio"
	metricRepairPasses   = "tako_repair_passes_total"
	metricPeerUp         = "tako_peer_up"
	metricConfigEpoch    = "tako_config_epoch"
	metricRecovering     = "tako_node_recovering"

	// A node that refills (streams back from its peers the ranges it lost)
	// exports these; absent or 0 when no refill runs.
	metricRefillActive         = "tako_refill_active"
	metricRefillBytesRemaining = "tako_refill_bytes_remaining"
	metricRefillKeysRemaining  = "tako_refill_keys_remaining"
	metricRefillBytesPerSecond = "tako_refill_bytes_per_second"
	metricRefillETA            = "tako_refill_eta_seconds"
	metricRefillReceivedBytes  = "tako_refill_received_bytes_total"
	metricRefillReceivedKeys   = "tako_refill_received_keys_total"
)

// errNotAsked is the error of a node the collector has not asked yet.
var errNotAsked = errors.New("not asked yet")

// nodeReading is what one answer of a node's /metrics said.
type nodeReading struct {
	version        string
	startTime      float64 // process_start_time_seconds; 0 when not reported
	keys           int64
	diskBytes      int64
	requests       float64 // requests answered since the node started
	repairProgress float64
	repairPasses   int64
	syncedEpoch    int64
	peersDown      []string
	configEpoch    int64
	recovering     bool
	refill         refillReading
}

// refillReading is what a node's metrics say of its refill; all zero when
// it exports none.
type refillReading struct {
	active         bool // a refill streams
	bytesRemaining int64
	keysRemaining  int64
	bytesPerSecond float64 // over the node's last 10 s
	etaSeconds     float64 // 0 when the node does not know
	receivedBytes  int64
	receivedKeys   int64
}

// readNode picks what the status shows out of a node's metrics.
func readNode(m metricSet) nodeReading {
	r := nodeReading{
		keys:           int64(m.sum(metricKeys, nil)),
		diskBytes:      int64(m.sum(metricDiskBytes, nil)),
		requests:       requestCount(m),
		repairProgress: m.sum(metricRepairProgress, nil),
		repairPasses:   int64(m.sum(metricRepairPasses, nil)),
		syncedEpoch:    -1,
		peersDown:      m.labelsWhere(metricPeerUp, "peer", 0),
		configEpoch:    int64(m.sum(metricConfigEpoch, nil)),
		recovering:     m.sum(metricRecovering, nil) == 1,
		refill: refillReading{
			active:         m.sum(metricRefillActive, nil) > 0,
			bytesRemaining: int64(m.sum(metricRefillBytesRemaining, nil)),
			keysRemaining:  int64(m.sum(metricRefillKeysRemaining, nil)),
			bytesPerSecond: m.sum(metricRefillBytesPerSecond, nil),
			etaSeconds:     m.sum(metricRefillETA, nil),
			receivedBytes:  int64(m.sum(metricRefillReceivedBytes, nil)),
			receivedKeys:   int64(m.sum(metricRefillReceivedKeys, nil)),
		},
	}
	r.startTime, _ = m.value(metricStartTime)
	if v, ok := m.value(syncedMetric); ok {
		r.syncedEpoch = int64(v)
	}
	if b := m[metricBuildInfo]; len(b) > 0 {
		r.version = b[0].labels["version"]
	}
	return r
}

// requestCount is the number of requests a node answered: the reads and
// writes it coordinated (whichever protocol they came by), plus the HTTP
// requests that are not among them. The HTTP data operations are left out
// of tako_http_requests_total because the node coordinated them, and so
// are the scrapes of /metrics; "restamped" (nodes of earlier versions:
// retries of a write) and "stamped_without_quorum" (a note on a write
// that has its own outcome too) count writes counted once already.
func requestCount(m metricSet) float64 {
	n := m.sum(metricReads, nil)
	n += m.sum(metricWrites, func(l map[string]string) bool {
		return l["outcome"] != "restamped" && l["outcome"] != "stamped_without_quorum"
	})
	n += m.sum(metricHTTPRequests, func(l map[string]string) bool {
		switch l["op"] {
		case "get", "head", "put", "delete", "metrics":
			return false
		}
		return true
	})
	return n
}

// nodeSeen is what the collector knows of one node after a scrape.
type nodeSeen struct {
	at       time.Time   // when the last scrape began
	err      error       // why the last scrape got no answer; nil when it did
	reading  nodeReading // of the last scrape, when it answered
	lastSeen time.Time   // when the node last answered; zero if never
	rate     float64     // requests per second between the last two answers
}

// next is what the collector knows of the node after a scrape that began
// at at and got r or err.
func (prev nodeSeen) next(at time.Time, r nodeReading, err error) nodeSeen {
	if err != nil {
		return nodeSeen{at: at, err: err, lastSeen: prev.lastSeen}
	}
	s := nodeSeen{at: at, reading: r, lastSeen: at}
	if prev.err == nil && !prev.lastSeen.IsZero() {
		s.rate = rate(prev.reading.requests, r.requests, at.Sub(prev.at))
	}
	return s
}

// rate is the increase of a counter from before to after, elapsed apart,
// per second. A counter that went down was reset (the node restarted): it
// increased by its whole value.
func rate(before, after float64, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	inc := after - before
	if inc < 0 {
		inc = after
	}
	return inc / elapsed.Seconds()
}

// statusCollector scrapes the /metrics of every node of the served
// configuration and keeps what the last scrape found.
type statusCollector struct {
	client   *http.Client
	scheme   string // of the nodes' HTTP ports: "http", or "https" with a tls section
	interval time.Duration
	now      func() time.Time
	nodes    func() []config.Node // the nodes to ask

	scrapeMu sync.Mutex // serializes scrapes
	mu       sync.Mutex // guards what follows
	seen     map[string]nodeSeen
	scraped  bool // at least one scrape finished
}

// run scrapes at once, then every interval, until ctx is done.
func (c *statusCollector) run(ctx context.Context) {
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		c.scrape(ctx, false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshot returns what the last scrape found, by node id, scraping once
// first when no scrape has finished yet.
func (c *statusCollector) snapshot(ctx context.Context) map[string]nodeSeen {
	c.mu.Lock()
	scraped := c.scraped
	c.mu.Unlock()
	if !scraped {
		c.scrape(ctx, true)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.seen)
}

// scrape asks every node concurrently and records the answers; with
// onlyFirst it does nothing if a scrape has finished already. A scrape cut
// short by ctx records nothing: its nodes are not down.
func (c *statusCollector) scrape(ctx context.Context, onlyFirst bool) {
	c.scrapeMu.Lock()
	defer c.scrapeMu.Unlock()
	c.mu.Lock()
	skip := onlyFirst && c.scraped
	c.mu.Unlock()
	if skip {
		return
	}
	nodes := c.nodes()
	at := c.now()
	readings, errs := c.askAll(ctx, nodes)
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[string]nodeSeen, len(nodes))
	for i, n := range nodes {
		seen[n.ID] = c.seen[n.ID].next(at, readings[i], errs[i])
	}
	c.seen, c.scraped = seen, true
}

// askAll scrapes the nodes concurrently; a node without an HTTP port gets
// errNoHTTP.
func (c *statusCollector) askAll(ctx context.Context, nodes []config.Node) ([]nodeReading, []error) {
	readings := make([]nodeReading, len(nodes))
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if n.HTTPPort == 0 {
			errs[i] = errNoHTTP
			continue
		}
		wg.Go(func() {
			m, err := scrapeMetrics(ctx, c.client, c.scheme+"://"+n.HTTPAddr()+"/metrics", nodeScrapeTimeout)
			if err != nil {
				errs[i] = err
				return
			}
			readings[i] = readNode(m)
		})
	}
	wg.Wait()
	return readings, errs
}

// errNoHTTP is the error of a node that has no HTTP port to ask.
var errNoHTTP = errors.New("the node has no HTTP port to ask")
