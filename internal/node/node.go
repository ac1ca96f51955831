// Package node is one Tako replica: it owns a store, serves the HTTP API on
// its HTTP port, and coordinates every public request across the key's
// replicas.
//
// Public operations (from the node's HTTP port, and later from proxies over
// the binary protocol) coordinate: a write goes to every replica of the key
// at once and is acknowledged once write_quorum of them hold it durably; a
// read asks every replica, answers with the newest version once read_quorum
// of them answered, and writes that version back to the replicas that were
// behind (read repair). Internal operations touch only the local store.
//
// A Node holds no process state outside itself, so one process (a test, or
// tako-cluster) can run many.
package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/budget"
	"github.com/takodb/tako/internal/buildinfo"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/connlimit"
	"github.com/takodb/tako/internal/coord"
	"github.com/takodb/tako/internal/gopool"
	"github.com/takodb/tako/internal/health"
	"github.com/takodb/tako/internal/hlc"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/httpserve"
	"github.com/takodb/tako/internal/store"
	"github.com/takodb/tako/internal/tlsconf"
	"github.com/takodb/tako/internal/wire"
)

// Options configure a Node.
type Options struct {
	// ID is the node's id in the configuration. Required.
	ID string
	// Config is the cluster configuration; it must name ID. Required.
	Config *config.Config
	// DataDir is where the store lives. Required.
	DataDir string
	// Logger receives the node's logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Registry receives the node's metrics and is served on /metrics. If
	// nil, a new registry with the Go and process collectors is used.
	Registry *prometheus.Registry
	// Wall is the wall clock for timestamps. If nil, time.Now.
	Wall func() time.Time
	// Epoch is the coordinator's epoch of Config; 0 when it comes from a file.
	Epoch int64
	// NoSync turns off syncing the write-ahead log before acknowledging a
	// write. For benchmarks only: an acknowledged write can then be lost.
	NoSync bool
	// Recover says that the store lost part of its data (a file removed,
	// a restore from an older copy): the node recovers all of its ranges
	// (recovery.go) as if its store were empty, keeping what it has. A
	// node whose store is empty recovers without it.
	Recover bool
	// Token is what the node presents to its peers' binary ports. When
	// Config has an auth section, it must be a token of the admin role
	// that the section lists, or New fails: the peers would refuse the
	// node's calls.
	Token string
	// MinFreeBytes is the free disk space, in bytes, that the store keeps
	// for its flushes and compactions: a write that would leave less is
	// refused (507 on HTTP, CodeInsufficientStorage on the binary port)
	// while reads go on, until space is freed. If 0, it is the store's
	// default, 128 MiB (store.Options.MinFreeBytes).
	MinFreeBytes int64

	// Network, when not nil, carries the node's ports and its connections
	// to peers instead of TCP: the in-memory network of a whole cluster in
	// one process (internal/simnet). Nil: TCP.
	Network Network

	// FS, if not nil, is the file system the store lives on instead of
	// the real disk: tests that inject disk faults, and a whole cluster in
	// one process (Pebble's in-memory file systems).
	FS vfs.FS

	// MinRepairSpacing is the least time between the starts of two
	// background repair passes, whatever background_repair_interval
	// says; 0 means a second. Scripted scenarios of the simulator
	// (internal/sim) shorten it so that many passes fit in a short run.
	MinRepairSpacing time.Duration
}

// Network is what a node listens and dials on when it is not TCP.
type Network interface {
	// Listen listens on addr, HOST:PORT.
	Listen(addr string) (net.Listener, error)
	// Dial connects to addr, HOST:PORT.
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// Node is one replica. Create it with New, serve with Run.
type Node struct {
	id       string
	logger   *slog.Logger
	registry *prometheus.Registry
	clock    *hlc.Clock
	store    *store.Store
	// httpConns and binaryConns bound the connections of the listeners
	// (limits.max_connections).
	httpConns, binaryConns *connlimit.Limiter
	dataDir                string // where the store lives
	api                    *httpapi.Handler
	local                  localReplica
	pool                   *wire.Pool // connections to peers
	// dialOpts are the pool's, for a connection of its own outside the
	// pool (newcluster.go).
	dialOpts wire.DialOptions
	network  Network // nil: TCP
	fs       vfs.FS  // the store's, where the node's own files live too
	// repairSpacing is the least time between two repair passes
	// (Options.MinRepairSpacing).
	repairSpacing time.Duration
	peers         health.Set // whether each peer answers
	frame         int        // the wire's frame size limit
	// budget bounds the bytes of requests that both ports hold at once
	// (limits.max_bytes_in_flight); nil: no bound.
	budget *budget.Budget
	// tls holds the certificates of the tls section, nil without one:
	// the binary port and the connections to peers then use plain TCP.
	tls *tlsconf.Reloader
	// token is what the node presents to its peers (Options.Token).
	token string
	// wireSrv is the binary port's server, once Run has started it.
	wireSrv atomic.Pointer[wire.Server]
	// writable is signalled when a store that opened read-only (its disk
	// was full) has room again (store.Options.OnWritable): Run then
	// returns ErrRestart.
	writable chan struct{}
	// storeFailed receives the store's failure (store.Options.OnFatal):
	// Run then stops the node.
	storeFailed chan error

	// recovery is set while the node may lack data that the
	// configuration gives it (it started with an empty store, or a new
	// configuration gave it new ranges), until it has refilled them and
	// finished a repair pass with every peer (recovery.go). Meanwhile it
	// reads the keys of those ranges through from their other replicas.
	recovery atomic.Pointer[recovery]
	// recoveryMu serialises starting and ending recoveries.
	recoveryMu sync.Mutex
	// refillProgress counts the refill that runs, for metrics and logs.
	refillProgress refillProgress
	// repairLimiter holds repair and refill to repair_bandwidth, less
	// while the node serves clients (backgroundRate).
	repairLimiter rateLimiter
	// foreground follows whether the node serves clients.
	foreground foreground
	// ownership remembers, in the store's directory, the ranges the node
	// held, so that it knows which ones it comes back to after a restart.
	ownership ownership
	// repairWake wakes the repair loop early (when recovery starts).
	repairWake chan struct{}
	// configChanged tells the repair loop that the configuration (and so
	// perhaps its interval) changed.
	configChanged chan struct{}

	cfg   atomic.Pointer[config.Config]
	epoch atomic.Int64 // of cfg, as the coordinator numbered it; 0 for a file
	// placementSince is the epoch since which the node's configurations
	// place keys as cfg does (config.SamePlacement): a fenced request of
	// a coordinator whose configuration is older is refused
	// (CodeStaleConfig). At start, the epoch of the first configuration.
	placementSince atomic.Int64

	// background work (read repair, writes to slow replicas after the
	// quorum answered) runs under bgCtx and is counted in bg.
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
	workers  gopool.Pool // runs the background work on reused goroutines

	mu      sync.Mutex // guards closed
	closed  bool
	metrics *nodeMetrics
	// coord coordinates the requests that come in through the node's
	// ports over the keys' replicas.
	coord      *coord.Coordinator
	listenMu   sync.Mutex // guards httpAddr, binaryAddr
	httpAddr   net.Addr
	binaryAddr net.Addr
}

// ErrNotInConfiguration is returned by New when the configuration does not
// name the node.
var ErrNotInConfiguration = errors.New("node: the configuration does not name this node")

// Errors of the node's disk. Both are the store's sentinels, so that the
// program that runs a node can tell them apart without importing the
// store.
var (
	// ErrStoreDamaged is wrapped by New's error when a file of the store
	// failed its checksum (store.ErrDamaged). The error names the file,
	// and says what to do: the store must be moved aside, and the node
	// started with an empty one, which refills from the other replicas.
	ErrStoreDamaged = store.ErrDamaged
	// ErrRestart is wrapped by Run's error when the node stopped to be
	// started again at once: its store opened read-only because the disk
	// was full, and the disk has room again. The program starts it again
	// in place (tako-node execs itself).
	ErrRestart = errors.New("node: restart to take writes again: the store opened read-only on a full disk, and space is back")
	// ErrStoreFailed is wrapped by Run's error (and New's) when the store
	// met a disk error that Pebble cannot survive (store.ErrFailed): a
	// failed write or sync of its write-ahead log. The node stopped
	// without acknowledging any write that was not synced; a restart
	// replays what was.
	ErrStoreFailed = store.ErrFailed
)

// failedStopWithin bounds Run's shutdown after the store failed: requests
// and background work stuck in the store are not waited for longer.
const failedStopWithin = 5 * time.Second

// New opens the node's store and prepares it to serve. The caller must call
// Run, or Close if it does not.
func New(opts Options) (*Node, error) {
	if opts.ID == "" || opts.Config == nil || opts.DataDir == "" {
		return nil, errors.New("node: Options.ID, Config and DataDir are required")
	}
	if _, _, ok := opts.Config.Node(opts.ID); !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotInConfiguration, opts.ID)
	}
	if err := opts.Config.Auth.Holds(opts.Token, auth.Admin); err != nil {
		return nil, fmt.Errorf("node %s: the node presents its token to the other nodes: %w (-token-file FILE or $TAKO_TOKEN)", opts.ID, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	tlsr, err := loadTLS(opts.Config)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", opts.ID, err)
	}
	storeFailed := make(chan error, 1)
	writable := make(chan struct{}, 1)
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	st, err := store.Open(filepath.Clean(opts.DataDir), store.Options{FS: opts.FS, Logger: logger, NoSync: opts.NoSync, MinFreeBytes: opts.MinFreeBytes,
		OnFatal: func(err error) {
			select {
			case storeFailed <- err:
			default:
			}
		},
		OnWritable: func() {
			select {
			case writable <- struct{}{}:
			default:
			}
		}})
	if err != nil {
		return nil, openError(opts.ID, opts.DataDir, err)
	}
	n := &Node{
		id:          opts.ID,
		logger:      logger,
		registry:    reg,
		clock:       hlc.New(opts.Wall),
		store:       st,
		dataDir:     opts.DataDir,
		fs:          fs,
		ownership:   ownership{fs: fs, dir: opts.DataDir},
		tls:         tlsr,
		storeFailed: storeFailed,
		writable:    writable,
	}
	n.local = localReplica{n: n}
	n.refillProgress.remaining = map[int][2]uint64{}
	n.repairWake = make(chan struct{}, 1)
	n.configChanged = make(chan struct{}, 1)
	n.cfg.Store(opts.Config)
	n.epoch.Store(opts.Epoch)
	n.placementSince.Store(opts.Epoch)
	n.frame = frameSize(opts.Config)
	n.token = opts.Token
	n.network = opts.Network
	n.repairSpacing = cmp.Or(opts.MinRepairSpacing, time.Second)
	dial := wire.DialOptions{MaxFrameSize: n.frame, Logger: logger, Token: opts.Token}
	if opts.Network != nil {
		dial.Dial = opts.Network.Dial
	}
	if tlsr != nil {
		dial.TLS = tlsr.ClientConfig()
	}
	n.pool = wire.NewPool(dial)
	n.dialOpts = dial
	n.bgCtx, n.bgCancel = context.WithCancel(context.Background())
	n.metrics = newNodeMetrics(reg, st, &n.peers, func(peer string) bool {
		nd, _, ok := n.cfg.Load().Node(peer)
		return ok && n.pool.Unreachable(nd.BinaryAddr())
	})
	n.coord = coord.New(coord.Env{
		Replica:  func(nd config.Node, forced bool) coord.Replica { return n.replicaOf(nd, forced) },
		Now:      n.clock.Now,
		Stored:   func(ts int64) error { return n.admit(doorStored, ts) },
		Go:       n.goBackground,
		Observer: n.metrics.coordinated,
		Logger:   logger,
	})
	reg.MustRegister(buildinfo.Collector("tako-node"))
	if tlsr != nil {
		reg.MustRegister(tlsr.Collectors()...)
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tako_node_recovering",
		Help: "1 while the node recovers data it may have lost (it reads the keys of its lost ranges through from their other replicas), else 0.",
	}, func() float64 {
		if n.Recovering() {
			return 1
		}
		return 0
	}))
	reg.MustRegister(refillCollectors(&n.refillProgress, n.metrics.refill)...)
	rec, err := loadRecovery(fs, opts.DataDir)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("node %s: %w", opts.ID, err)
	}
	replicated := replicatedRanges(opts.Config, opts.ID)
	switch {
	case rec != nil:
		n.recovery.Store(rec)
		logger.Warn("node recovering: resuming the recovery that was under way when it stopped; reads of its lost ranges go through to the other replicas meanwhile",
			"node", opts.ID, "why", rec.state.Reason, "since", rec.state.Started.Format(time.RFC3339), "units_left", len(rec.pending()))
	case opts.Recover && len(replicated) > 0:
		n.startRecovering("the operator says that its store lost data or may be an old copy (-recover)", replicated, true)
	case st.Created() && len(replicated) > 0:
		// A store left by a previous run, even an empty one, lost
		// nothing: it missed what was written while the node was down,
		// as any replica that was down did.
		n.startRecovering("its store is new where the configuration gives it keys (a new node, or a lost disk)", replicated, false)
		if rec := n.recovery.Load(); rec != nil {
			if err := rec.setMayBeNew(true); err != nil {
				logger.Error("node recovering, but its progress cannot be saved: a restart will start the refill over", "node", opts.ID, "err", err)
			}
		}
	}
	if gained := n.ownership.gained(opts.Config, opts.ID); len(gained) > 0 && st.Stats().Keys > 0 {
		n.startRecovering("it holds hash ranges that it did not hold when it last ran (it was out of the deployment, or its ranges moved)", gained, true)
	}
	n.ownership.save(opts.Config, opts.ID, logger)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tako_config_epoch",
		Help: "Epoch of the configuration this process follows (0: read from a file).",
	}, func() float64 { return float64(n.epoch.Load()) }))
	limits := n.settings(opts.Config).Limits
	n.httpConns = connlimit.New("http", limits.MaxConnections, true)
	n.binaryConns = connlimit.New("binary", limits.MaxConnections, false)
	reg.MustRegister(n.httpConns.Collectors()...)
	reg.MustRegister(n.binaryConns.Collectors()...)
	reg.MustRegister(wireCollectors(&n.wireSrv)...)
	apiOpts := httpapi.Options{Backend: n, Registry: reg, Logger: logger, MaxInFlight: limits.MaxRequestsInFlight,
		Auth: func() *auth.Tokens { return n.cfg.Load().Auth }}
	if limits.MaxBytesInFlight > 0 {
		n.budget = budget.New(limits.MaxBytesInFlight, budget.DefaultWait)
		apiOpts.Budget = n.budget
	}
	n.api = httpapi.NewHandler(apiOpts)
	return n, nil
}

// openError says why the store in dir did not open, and, when a file of it
// is damaged, what to do: the one line a node that refuses to start
// prints.
func openError(id, dir string, err error) error {
	var de *store.DamageError
	if errors.As(err, &de) {
		return fmt.Errorf("node %s: %w; the node serves nothing from it and does not start on it. Move %s aside (mv %s %s.damaged) and start the node again: with an empty store it refills all of its ranges from the other replicas, reading their keys through them meanwhile (docs/operations.md, \"A damaged or failing disk\")",
			id, de, dir, dir, dir)
	}
	return fmt.Errorf("node %s: opening the store in %s: %w", id, dir, err)
}

// loadTLS loads the certificates of cfg's tls section, or returns nil
// when it has none.
func loadTLS(cfg *config.Config) (*tlsconf.Reloader, error) {
	if cfg.TLS == nil {
		return nil, nil
	}
	cert, key := cfg.TLS.For("node")
	r, err := tlsconf.Load(cfg.TLS.CA, cert, key)
	if err != nil {
		return nil, fmt.Errorf("the configuration's tls section: %w", err)
	}
	return r, nil
}

// ErrNoTLS is returned by ReloadTLS when the node runs without TLS.
var ErrNoTLS = errors.New("node: the configuration has no tls section")

// ReloadTLS reads the certificate and key files of the tls section again:
// new connections, in both directions, use the new certificate, and the
// connections already open are kept. On error the node keeps its current
// certificate.
func (n *Node) ReloadTLS() error {
	if n.tls == nil {
		return ErrNoTLS
	}
	if err := n.tls.Reload(); err != nil {
		return fmt.Errorf("node %s: %w", n.id, err)
	}
	return nil
}

// SetConfig makes the node follow a new configuration, with the epoch the
// coordinator gave it (0 for a file). Requests in flight finish with the
// configuration they started with; new ones use the new one. A node that
// the configuration no longer names stops serving (everything but /health
// answers 503) until a configuration names it again. Ports are bound once:
// a node whose own addresses change must be restarted, and says so.
func (n *Node) SetConfig(cfg *config.Config, epoch int64) {
	// The ranges it gains are recovering (its records there suspect)
	// before the configuration that gives them takes effect: a node that
	// comes back to a deployment must not serve one request, nor answer
	// one repair, with its old records as if they were current.
	gained := gainedRanges(n.cfg.Load(), cfg, n.id)
	if more := n.ownership.gained(cfg, n.id); len(more) > 0 {
		gained = union(gained, more)
	}
	if len(gained) > 0 {
		n.startRecoveringUnder(cfg, "the new configuration gives it hash ranges it did not hold", gained, true)
	}
	// The fence moves before the configuration does: from the moment the
	// node places keys by cfg, it refuses coordinators that place them by
	// an older layout.
	if !config.SamePlacement(n.cfg.Load(), cfg) {
		n.placementSince.Store(epoch)
	}
	old := n.cfg.Swap(cfg)
	n.epoch.Store(epoch)
	n.peers.Join(peerIDs(config.AddedNodes(old, cfg), n.id), time.Now().Add(health.JoinPatience))
	select {
	case n.configChanged <- struct{}{}:
	default:
	}
	n.ownership.save(cfg, n.id, n.logger)
	oldSelf, _, wasIn := old.Node(n.id)
	self, d, isIn := cfg.Node(n.id)
	switch {
	case wasIn && !isIn:
		n.logger.Warn("this node is not in the new configuration: serving nothing but /health (503) until a configuration names it again", "node", n.id, "epoch", epoch)
	case !wasIn && isIn:
		n.logger.Info("this node is in the configuration again: serving", "node", n.id, "epoch", epoch, "deployment", d.Name)
	case isIn && cfg.Auth.Holds(n.token, auth.Admin) != nil:
		n.logger.Error("the new configuration's auth section does not list this node's token as an admin token: the other nodes will refuse its calls; give it one with -token-file and restart it",
			"node", n.id, "epoch", epoch, "err", cfg.Auth.Holds(n.token, auth.Admin))
	case isIn && !old.TLS.Equal(cfg.TLS):
		n.logger.Warn("the configuration changed the tls section; the node keeps its TLS settings until it is restarted (SIGHUP reloads the certificate files)",
			"node", n.id, "epoch", epoch)
	case isIn && (self.BinaryAddr() != oldSelf.BinaryAddr() || self.HTTPAddr() != oldSelf.HTTPAddr()):
		n.logger.Warn("the configuration moved this node to new addresses; it keeps serving on the old ones until it is restarted",
			"node", n.id, "binary", self.BinaryAddr(), "http", self.HTTPAddr(), "epoch", epoch)
	default:
		n.logger.Info("following a new configuration", "node", n.id, "epoch", epoch)
	}
}

// startRecovering makes the node recover the ranges lost (adding them to
// a recovery under way), saves that, wakes the repair loop, and says why.
// With suspect, the node's records of those ranges older than now are
// suspect until the refill has merged them (see recovery.go).
func (n *Node) startRecovering(why string, lost []hashRange, suspect bool) {
	n.startRecoveringUnder(n.cfg.Load(), why, lost, suspect)
}

// startRecoveringUnder is startRecovering with the refill's units cut
// along cfg's arcs (a configuration about to take effect).
func (n *Node) startRecoveringUnder(cfg *config.Config, why string, lost []hashRange, suspect bool) {
	n.recoveryMu.Lock()
	defer n.recoveryMu.Unlock()
	units := refillUnits(cfg, n.id, lost)
	if suspect {
		before := n.clock.Now()
		for i := range units {
			units[i].SuspectBefore = before
		}
	}
	rec := n.recovery.Load()
	if rec != nil {
		rec.add(lost, units)
	} else {
		rec = newRecovery(n.fs, n.dataDir, why, lost, units)
	}
	if err := rec.save(); err != nil {
		n.logger.Error("node recovering, but its progress cannot be saved: a restart will start the refill over", "node", n.id, "err", err)
	}
	n.recovery.Store(rec)
	select {
	case n.repairWake <- struct{}{}:
	default:
	}
	n.logger.Warn("node recovering: "+why+"; it refills those ranges from its peers, and until it has and a repair pass with every peer has finished, it reads their keys through from the other replicas before it answers",
		"node", n.id, "ranges", len(lost), "units", len(units))
}

// endRecovery ends rec, the node's recovery, unless ranges were added to
// it since generation gen.
func (n *Node) endRecovery(rec *recovery, gen int) bool {
	n.recoveryMu.Lock()
	defer n.recoveryMu.Unlock()
	if n.recovery.Load() != rec || rec.generation() != gen || rec.unmerged() > 0 {
		return false
	}
	if err := removeRecoveryFile(n.fs, n.dataDir); err != nil {
		n.logger.Error("the recovery ended but its state file stays: the next start resumes it, harmlessly", "node", n.id, "err", err)
	}
	n.recovery.Store(nil)
	return true
}

// suspectBound returns the timestamp below which the node's records of
// hash h are suspect, 0 when none are: the key is in a range the node came
// back to and that its refill has not merged yet, and a record older than
// the moment it came back is suspect (see recovery.go). Take it before
// reading the record it judges (see readOwn).
func (n *Node) suspectBound(h uint32) int64 {
	if rec := n.recovery.Load(); rec != nil {
		return rec.suspectBefore(h)
	}
	return 0
}

// lostRanges returns the ranges the node recovers, or nil.
func (n *Node) lostRanges() rangeSet {
	if rec := n.recovery.Load(); rec != nil {
		return rec.lostRanges()
	}
	return nil
}

// Recovering reports whether the node is recovering data it may lack (see
// HealthDetail).
func (n *Node) Recovering() bool { return n.recovery.Load() != nil }

// HealthDetail says on /health that the node is recovering, and how far
// its refill has come.
func (n *Node) HealthDetail() string {
	if !n.Recovering() {
		return ""
	}
	if p := &n.refillProgress; p.active.Load() {
		keys, bytes := p.left()
		return fmt.Sprintf("recovering: refilling lost ranges, about %d keys and %d MB to go", keys, bytes/1e6)
	}
	return "recovering: a repair pass is bringing back data this node may lack"
}

// Handler returns the node's HTTP API handler.
func (n *Node) Handler() http.Handler { return n.api }

// Config returns the configuration the node currently follows.
func (n *Node) Config() *config.Config { return n.cfg.Load() }

// HTTPAddr returns the address the HTTP listener is bound to, or nil before
// Run has bound it (or when the node has no HTTP port).
func (n *Node) HTTPAddr() net.Addr {
	n.listenMu.Lock()
	defer n.listenMu.Unlock()
	return n.httpAddr
}

// BinaryAddr returns the address the binary listener is bound to, or nil
// before Run has bound it.
func (n *Node) BinaryAddr() net.Addr {
	n.listenMu.Lock()
	defer n.listenMu.Unlock()
	return n.binaryAddr
}

// frameSize is the wire's frame limit for the largest max_value_size of
// the configuration, so that every value a deployment accepts fits a frame.
func frameSize(cfg *config.Config) int { return wire.FrameSizeFor(cfg.LargestMaxValueSize()) }

// Run binds the node's ports from the configuration (the binary port, and
// the HTTP port when it has one), serves until ctx is done, then shuts down
// cleanly: listeners first, then requests in flight (up to 10 s), then
// background work, then the store. It returns nil after a clean shutdown
// caused by ctx, and an error when a port cannot be bound. Run closes the
// node; it must not be called twice.
//
// When the store fails (ErrStoreFailed: a write or sync of its
// write-ahead log failed), Run logs it on one line and shuts down the same
// way, waiting at most failedStopWithin for what is stuck in the store,
// and returns an error wrapping ErrStoreFailed that says what to do.
func (n *Node) Run(ctx context.Context) (err error) {
	defer func() {
		if errors.Is(err, ErrStoreFailed) {
			n.closeWithin(failedStopWithin)
			return
		}
		n.Close()
	}()
	self, _, _ := n.cfg.Load().Node(n.id)
	binLn, err := n.listen("the binary protocol", self.BinaryAddr())
	if err != nil {
		return err
	}
	var httpLn net.Listener
	if self.HTTPPort != 0 {
		if httpLn, err = n.listen("HTTP", self.HTTPAddr()); err != nil {
			binLn.Close()
			return err
		}
	}
	n.listenMu.Lock()
	n.binaryAddr = binLn.Addr()
	if httpLn != nil {
		n.httpAddr = httpLn.Addr()
	}
	n.listenMu.Unlock()

	limits := n.settings(n.cfg.Load()).Limits
	wireOpts := wire.ServerOptions{Handler: wireHandler{n}, Logger: n.logger, MaxFrameSize: n.frame,
		MaxInFlightPerConn: limits.MaxRequestsPerConnection, Authorize: n.authorizeWire}
	if n.budget != nil {
		wireOpts.Budget = n.budget
	}
	if n.tls != nil {
		wireOpts.TLS = n.tls.ServerConfig()
	}
	wireSrv := wire.NewServer(wireOpts)
	n.wireSrv.Store(wireSrv)
	binLn = n.binaryConns.Listener(binLn)
	var srv *httpserve.Server
	if httpLn != nil {
		// HTTPS with the binary port's certificate, which ReloadTLS
		// reloads for both.
		hopts := httpserve.Options{Handler: n.api, Limits: limits, Conns: n.httpConns, Logger: n.logger}
		if n.tls != nil {
			hopts.TLS = n.tls.HTTPServerConfig()
		}
		srv = httpserve.New(httpLn, hopts)
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- fmt.Errorf("serving the binary protocol: %w", wireSrv.Serve(binLn)) }()
	servers := 1
	httpAddr := "none"
	if srv != nil {
		servers++
		httpAddr = srv.Addr().String()
		go func() { serveErr <- fmt.Errorf("serving HTTP: %w", srv.Serve()) }()
	}
	n.goBackground(n.runRepair)
	n.logger.Info("node serving", "node", n.id, "version", buildinfo.Version(), "http", httpAddr, "binary", binLn.Addr().String(),
		"deployment", n.deploymentName(), "epoch", n.epoch.Load(), "data", n.dataDir, "keys", n.store.Stats().Keys,
		"tls", n.tls != nil)
	var failed error
	shutdownWithin := 10 * time.Second
	select {
	case <-ctx.Done():
	case failed = <-serveErr:
		servers--
	case <-n.writable:
		failed = ErrRestart
		n.logger.Warn("node restarting: its store opened read-only on a full disk, and space is back", "node", n.id)
	case ferr := <-n.storeFailed:
		failed = fmt.Errorf("stopped: %w; no write it could not sync was acknowledged. Check the disk (the kernel log, free space), then start the node again: it replays its write-ahead log, which holds every write it acknowledged", ferr)
		shutdownWithin = failedStopWithin
		n.logger.Error("node stopping: its store met a disk error it cannot go on from", "node", n.id, "err", ferr)
	}
	n.logger.Info("node shutting down", "node", n.id)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownWithin)
	defer cancel()
	if srv != nil {
		if err := srv.Shutdown(shutdownCtx); err != nil {
			n.logger.Warn("HTTP requests still in flight at shutdown were cut off", "node", n.id, "err", err)
		}
	}
	if err := wireSrv.Shutdown(shutdownCtx); err != nil {
		n.logger.Warn("binary requests still in flight at shutdown were cut off", "node", n.id, "err", err)
	}
	for range servers {
		<-serveErr
	}
	if failed != nil {
		return fmt.Errorf("node %s: %w", n.id, failed)
	}
	return nil
}

func (n *Node) deploymentName() string {
	_, d, _ := n.cfg.Load().Node(n.id)
	if d == nil {
		return ""
	}
	return d.Name
}

// Close stops background work and closes the store. It is idempotent.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	n.bgCancel()
	n.bg.Wait()
	n.workers.Close()
	n.pool.Close()
	if err := n.store.Close(); err != nil {
		return fmt.Errorf("node %s: closing the store: %w", n.id, err)
	}
	n.logger.Info("node stopped", "node", n.id)
	return nil
}

// closeWithin is Close bounded by d, for a node whose store failed: work
// stuck in Pebble is not waited for, as the process is about to exit.
func (n *Node) closeWithin(d time.Duration) {
	done := make(chan struct{})
	go func() {
		n.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		n.logger.Warn("background work is stuck in the failed store; stopping without it", "node", n.id, "waited", d)
	}
}

// goBackground runs f as background work owned by the node: f gets a
// context that ends at Close, and Close waits for f. It returns false, and
// does not run f, once Close has begun.
func (n *Node) goBackground(f func(ctx context.Context)) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.bg.Add(1)
	n.workers.Go(func() {
		defer n.bg.Done()
		f(n.bgCtx)
	})
	return true
}
