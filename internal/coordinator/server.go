package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/buildinfo"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/connlimit"
	"github.com/takodb/tako/internal/httpserve"
	"github.com/takodb/tako/internal/tlsconf"
)

// ErrUnknownID is returned (wrapped) by NewServer and Reload when the
// configuration file does not name the Server's ID among its coordinators.
var ErrUnknownID = errors.New("coordinator: the configuration does not name this coordinator")

// ErrRunTwice is returned by Server.Run when the Server already ran.
var ErrRunTwice = errors.New("coordinator: Server.Run called twice")

// ServerOptions configure a Server.
type ServerOptions struct {
	// ID is this coordinator's id, as the configuration's coordinators
	// name it. Required.
	ID string
	// ConfigPath is the configuration file (YAML or JSON) that the
	// Server serves and Reload re-reads. Required.
	ConfigPath string
	// StateDir is the directory of the epoch state, epoch.json; it is
	// created if need be. The programs pass DIR/coordinator/ID. Required.
	StateDir string
	// Logger receives the Server's logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Token is sent as a bearer token to the master coordinator (which
	// a follower asks for the configuration: an admin token) and to the
	// nodes (whose /metrics the status reads: any role), when the
	// configuration has an auth section.
	Token string
	// Registry receives the Server's metrics, which Handler serves on
	// /metrics. If nil, a new registry with the Go and process collectors
	// is used.
	Registry *prometheus.Registry
	// Wall is the wall clock that new epochs are taken from. If nil,
	// time.Now.
	Wall func() time.Time
	// FollowInterval is how long a follower's long-poll to the master
	// waits for a newer configuration before asking again. If zero, 30s.
	FollowInterval time.Duration
	// StatusInterval is how often Run scrapes every node's /metrics for
	// GET /status and the status page. If zero, 2s.
	StatusInterval time.Duration
}

// Server serves a configuration file over HTTP with its epoch, reloads it
// on demand and, when it is not the master coordinator, follows the master.
// Its methods are safe for concurrent use.
type Server struct {
	id         string
	path       string
	stateDir   string
	addr       string
	log        *slog.Logger
	wall       func() time.Time
	followWait time.Duration
	client     *http.Client
	httpClient *http.Client // asks nodes how far their repair is
	// scheme is "https" when the configuration had a tls section when
	// NewServer read it (tls then serves it and verifies the peers),
	// "http" otherwise.
	scheme    string
	tls       *tlsconf.Reloader
	metrics   *serverMetrics
	handler   http.Handler
	collector *statusCollector // the nodes' state, for GET /status

	// cur is what is served. A *served is never modified: a new
	// configuration is published by storing a new one and closing the
	// changed channel of the old.
	cur     atomic.Pointer[served]
	waiting atomic.Int64 // long-polls waiting for a newer configuration

	// updateMu serializes the changes of what is served (Reload and the
	// follower's adoptions): each decides on the epoch, persists it and
	// publishes while holding it.
	updateMu sync.Mutex
	fileSum  string // guarded by updateMu: hash of the own file's canonical JSON as last read

	started  atomic.Bool
	stopping chan struct{} // closed when Run begins to shut down: long-polls answer at once
}

// served is one configuration as the Server serves it.
type served struct {
	cfg     *config.Config
	body    []byte // canonical JSON
	sum     string // hex SHA-256 of body
	epoch   int64
	changed chan struct{} // closed when a newer configuration is published
}

// NewServer loads and validates the configuration file, checks that it
// names opts.ID among its coordinators and loads (or creates) the epoch
// state in opts.StateDir. An invalid file gives the config package's error,
// which names every offending key and its deployment; a file that does not
// name opts.ID gives an error wrapping ErrUnknownID.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.ID == "" || opts.ConfigPath == "" || opts.StateDir == "" {
		return nil, errors.New("coordinator: ServerOptions.ID, ConfigPath and StateDir are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Wall == nil {
		opts.Wall = time.Now
	}
	if opts.FollowInterval <= 0 {
		opts.FollowInterval = defaultWait
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = defaultStatusInterval
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	reg.MustRegister(buildinfo.Collector("tako-coordinator"))
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("coordinator: %w", err)
	}
	self, err := findSelf(cfg, opts.ID, opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	s := &Server{
		id:         opts.ID,
		path:       opts.ConfigPath,
		stateDir:   opts.StateDir,
		addr:       self.Addr(),
		log:        opts.Logger.With("coordinator", opts.ID),
		wall:       opts.Wall,
		followWait: min(opts.FollowInterval, maxWait),
		scheme:     "http",
		stopping:   make(chan struct{}),
	}
	// With a tls section, the coordinator serves HTTPS and asks the
	// master and the nodes over HTTPS, verifying them with the CA.
	// ReloadTLS (SIGHUP) reads the certificate and key again.
	var clientTLS *tls.Config
	if t := cfg.TLS; t != nil {
		cert, key := t.For("coordinator")
		if s.tls, err = tlsconf.Load(t.CA, cert, key); err != nil {
			return nil, fmt.Errorf("coordinator: %s: the tls section: %w", opts.ConfigPath, err)
		}
		reg.MustRegister(s.tls.Collectors()...)
		s.scheme = "https"
		clientTLS = s.tls.HTTPClientConfig()
	}
	s.client = auth.WithToken(newClient(clientTLS), opts.Token)
	httpClient := &http.Client{Timeout: 3 * time.Second}
	if clientTLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = clientTLS
		httpClient.Transport = tr
	}
	s.httpClient = auth.WithToken(httpClient, opts.Token)
	if err := s.start(cfg); err != nil {
		return nil, err
	}
	s.collector = &statusCollector{
		client:   s.httpClient,
		scheme:   s.scheme,
		interval: opts.StatusInterval,
		now:      s.wall,
		nodes:    func() []config.Node { return s.cur.Load().cfg.Nodes() },
	}
	if s.metrics, err = newServerMetrics(reg, s); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	// With an auth section, everything but /health needs a token: the
	// configuration and the status are the admin's (nodes and proxies
	// fetch the configuration with an admin token), /metrics any role.
	tokens := func() *auth.Tokens {
		cfg, _ := s.Current()
		return cfg.Auth
	}
	admin := func(h http.HandlerFunc) http.Handler { return auth.Require(tokens, auth.Admin, h) }
	mux.Handle("GET /configuration", admin(s.serveConfiguration))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", auth.Require(tokens, auth.Read, promhttp.HandlerFor(reg, promhttp.HandlerOpts{})))
	mux.Handle("GET /migration", admin(s.serveMigration))
	mux.Handle("GET /status", admin(s.serveStatus))
	// The page holds no data: it asks /status, with a token it prompts for.
	mux.HandleFunc("GET /{$}", servePage)
	s.handler = s.metrics.countRequests(mux)
	return s, nil
}

// findSelf returns the coordinator of cfg named id, or an error wrapping
// ErrUnknownID that names path and the coordinators it lists.
func findSelf(cfg *config.Config, id, path string) (config.Coordinator, error) {
	names := make([]string, 0, len(cfg.Coordinators))
	for _, c := range cfg.Coordinators {
		if c.ID == id {
			return c, nil
		}
		names = append(names, c.ID)
	}
	listed := "none"
	if len(names) > 0 {
		listed = strings.Join(names, ", ")
	}
	return config.Coordinator{}, fmt.Errorf("%w: %s has no coordinators.%s (coordinators listed: %s)", ErrUnknownID, path, id, listed)
}

// start decides what the Server serves first, from the configuration file
// cfg and the epoch state: the file at the state's epoch if the state
// numbered this very configuration; the configuration adopted from the
// master if the state holds one and the file is the one it was adopted
// over, or if the file changed since in a way the destructive rule refuses
// (unless the force file exists); otherwise the file under a new epoch,
// which is persisted.
func (s *Server) start(cfg *config.Config) error {
	body, sum, err := canonical(cfg)
	if err != nil {
		return err
	}
	s.fileSum = sum
	st, err := readState(s.stateDir)
	switch {
	case err == nil:
	case isNotExist(err):
		st = epochState{}
	case errors.Is(err, errCorruptState):
		// The state is written atomically, so this is damage from
		// outside; the wall clock still gives an epoch that grows unless
		// the clock went back.
		s.log.Warn("ignoring a damaged epoch state", "err", err)
		st = epochState{}
	default:
		return err
	}
	if st.Epoch > 0 && st.SHA256 == sum {
		s.cur.Store(&served{cfg: cfg, body: body, sum: sum, epoch: st.Epoch, changed: make(chan struct{})})
		s.log.Info("serving the configuration file", "path", s.path, "epoch", st.Epoch)
		return nil
	}
	if st.Epoch > 0 && len(st.Configuration) > 0 {
		adopted, err := adoptedOf(st)
		switch {
		case err != nil:
			if st.FileSHA256 == sum {
				s.log.Warn("ignoring the adopted configuration in the epoch state", "err", err)
			}
		case st.FileSHA256 == sum:
			s.cur.Store(adopted)
			s.log.Info("serving the configuration adopted from the master before the restart; the file is unchanged since",
				"path", s.path, "epoch", st.Epoch)
			return nil
		default:
			// The file changed while the coordinator was stopped: the
			// destructive rule judges it against what was served, as a
			// reload would. (Without an adopted configuration the state
			// holds only the hash of what was served, and there is nothing
			// to judge against.)
			if p := destructive(adopted.cfg, cfg); p != nil {
				force, forced := s.takeForce()
				what := describeDestructive(adopted.cfg, cfg, p, force)
				if !forced {
					s.cur.Store(adopted)
					s.fileSum = st.FileSHA256
					s.log.Error("refusing the changed configuration file at start, serving the configuration served before the restart",
						"path", s.path, "epoch", st.Epoch, "err", fmt.Errorf("%w: %s", ErrDestructive, what))
					return nil
				}
				s.log.Warn("forced: serving a changed configuration file that leaves keys without a write quorum of their current replicas",
					"path", s.path, "change", what, "force_file", force)
			}
		}
	}
	epoch := max(st.Epoch+1, s.wall().UnixMicro())
	if err := writeState(s.stateDir, epochState{Epoch: epoch, SHA256: sum}); err != nil {
		return err
	}
	s.cur.Store(&served{cfg: cfg, body: body, sum: sum, epoch: epoch, changed: make(chan struct{})})
	s.log.Info("serving the configuration file under a new epoch", "path", s.path, "epoch", epoch, "previous_epoch", st.Epoch)
	return nil
}

// adoptedOf returns the configuration that the epoch state st records as
// adopted from the master, served under its epoch, or an error when it does
// not parse or is not the one st's hash names.
func adoptedOf(st epochState) (*served, error) {
	cfg, err := config.Parse(st.Configuration)
	if err != nil {
		return nil, fmt.Errorf("coordinator: the adopted configuration in the epoch state: %w", err)
	}
	body, sum, err := canonical(cfg)
	if err != nil {
		return nil, err
	}
	if sum != st.SHA256 {
		return nil, fmt.Errorf("coordinator: the adopted configuration in the epoch state is not the one its sha256 names")
	}
	return &served{cfg: cfg, body: body, sum: sum, epoch: st.Epoch, changed: make(chan struct{})}, nil
}

// Addr returns the address the Server listens on: HOST:PORT of its entry in
// the configuration file's coordinators, as NewServer read it.
func (s *Server) Addr() string { return s.addr }

// Handler returns the Server's HTTP handler: /configuration, /health,
// /metrics, /migration, /status and the status page at /, as the package
// documentation describes. Without Run, /status shows the nodes as the
// first request to it found them.
func (s *Server) Handler() http.Handler { return s.handler }

// Current returns the configuration served and its epoch.
func (s *Server) Current() (*config.Config, int64) {
	cur := s.cur.Load()
	return cur.cfg, cur.epoch
}

// ServesTLS reports whether the coordinator serves HTTPS: its configuration
// file had a tls section when it started.
func (s *Server) ServesTLS() bool { return s.tls != nil }

// ReloadTLS reads the certificate and key files of the tls section again
// (what SIGHUP does, besides Reload): new HTTPS handshakes, and the
// coordinator's own requests to the master and to the nodes, use the new
// certificate; open connections are kept. A file that does not load, or a
// certificate the CA did not sign, is refused and the current certificate
// stays. Without a tls section when the coordinator started, it does
// nothing. The CA file is read only at start.
func (s *Server) ReloadTLS() error {
	if s.tls == nil {
		return nil
	}
	if err := s.tls.Reload(); err != nil {
		return fmt.Errorf("coordinator: reloading the TLS certificate: %w", err)
	}
	return nil
}

// Reload re-reads the configuration file. An invalid file (or one that no
// longer names this coordinator) is logged at Error with the reason and
// returned as the error, and the last good configuration keeps being served.
// A file whose canonical JSON is unchanged keeps its epoch. A changed file
// is served under a new epoch, max(current + 1, the wall clock in
// microseconds), once that is persisted; an error persisting it is returned
// and changes nothing. A valid change that the migration safety rules
// refuse (see ForceFile) is logged at Error with what it would do and what
// to do instead, counted as refused, and returned as an error wrapping
// ErrDestructive or ErrNotConverged; the last good configuration keeps
// being served under its epoch.
func (s *Server) Reload() error {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	cfg, err := config.Load(s.path)
	if err == nil {
		_, err = findSelf(cfg, s.id, s.path)
	}
	if err != nil {
		s.metrics.reloads.WithLabelValues(reloadInvalid).Inc()
		s.log.Error("invalid configuration, keeping the last good configuration", "path", s.path, "err", err)
		return fmt.Errorf("coordinator: reloading: %w", err)
	}
	body, sum, err := canonical(cfg)
	if err != nil {
		s.metrics.reloads.WithLabelValues(reloadError).Inc()
		return err
	}
	cur := s.cur.Load()
	if sum == s.fileSum || sum == cur.sum {
		if sum != s.fileSum {
			// A follower's file now says what it serves: forget the
			// adopted copy.
			if err := writeState(s.stateDir, epochState{Epoch: cur.epoch, SHA256: cur.sum}); err != nil {
				s.log.Warn("could not record the reloaded file in the epoch state", "err", err)
			} else {
				s.fileSum = sum
			}
		}
		s.metrics.reloads.WithLabelValues(reloadUnchanged).Inc()
		s.log.Info("configuration file unchanged", "path", s.path, "epoch", cur.epoch)
		return nil
	}
	// Only a configuration that would be served is judged: a follower's
	// own file that is unchanged since it adopted the master's changes
	// nothing.
	if err := s.checkChange(cur, cfg); err != nil {
		s.metrics.reloads.WithLabelValues(reloadRefused).Inc()
		s.log.Error("refusing the reload, keeping the last good configuration", "path", s.path, "epoch", cur.epoch, "err", err)
		return fmt.Errorf("coordinator: reloading: %w", err)
	}
	epoch := max(cur.epoch+1, s.wall().UnixMicro())
	if err := writeState(s.stateDir, epochState{Epoch: epoch, SHA256: sum}); err != nil {
		s.metrics.reloads.WithLabelValues(reloadError).Inc()
		s.log.Error("could not persist the new epoch, keeping the last good configuration", "path", s.path, "err", err)
		return err
	}
	s.fileSum = sum
	s.publishLocked(cfg, body, sum, epoch)
	s.metrics.reloads.WithLabelValues(reloadOK).Inc()
	s.log.Info("configuration reloaded", "path", s.path, "epoch", epoch, "previous_epoch", cur.epoch)
	return nil
}

// publishLocked serves cfg under epoch and wakes every waiting long-poll.
// s.updateMu must be held.
func (s *Server) publishLocked(cfg *config.Config, body []byte, sum string, epoch int64) {
	old := s.cur.Load()
	s.cur.Store(&served{cfg: cfg, body: body, sum: sum, epoch: epoch, changed: make(chan struct{})})
	close(old.changed)
}

// Run listens on Addr and serves Handler until ctx is done, then shuts down
// cleanly: waiting long-polls are answered (304) and requests in flight end
// (for at most 5 s). It scrapes every node's /metrics every StatusInterval
// for GET /status. When the configuration names a master coordinator other
// than this one, Run also follows it. It returns nil after a clean shutdown,
// an error naming the address when it cannot listen, and ErrRunTwice when
// the Server already ran.
func (s *Server) Run(ctx context.Context) error {
	if s.started.Load() {
		return ErrRunTwice
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("coordinator %s: listening on %s: %w", s.id, s.addr, err)
	}
	return s.serve(ctx, ln)
}

// serve is Run on a listener of the caller's; it closes ln.
func (s *Server) serve(ctx context.Context, ln net.Listener) error {
	if !s.started.CompareAndSwap(false, true) {
		_ = ln.Close()
		return ErrRunTwice
	}
	// The limits of the active deployment when the coordinator starts.
	limits := s.cur.Load().cfg.Active.Limits
	hopts := httpserve.Options{Handler: s.handler, Limits: limits, Conns: connlimit.New("http", limits.MaxConnections, true), Logger: s.log}
	if s.tls != nil {
		hopts.TLS = s.tls.HTTPServerConfig()
	}
	srv := httpserve.New(ln, hopts)
	bgCtx, stopBackground := context.WithCancel(ctx)
	defer stopBackground()
	var wg sync.WaitGroup
	wg.Go(func() { s.follow(bgCtx) })
	wg.Go(func() { s.collector.run(bgCtx) })
	served := make(chan error, 1)
	wg.Go(func() { served <- srv.Serve() })
	s.log.Info("coordinator serving", "coordinator", s.id, "version", buildinfo.Version(), "addr", srv.Addr().String(),
		"epoch", s.cur.Load().epoch, "config", s.path, "state", s.stateDir, "tls", s.tls != nil)

	var err error
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("coordinator %s: serving on %s: %w", s.id, srv.Addr(), err)
	}
	close(s.stopping)
	stopBackground()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		s.log.Warn("requests still in flight at shutdown: their connections were closed", "err", serr)
	}
	wg.Wait()
	s.client.CloseIdleConnections()
	s.log.Info("coordinator stopped")
	return err
}

// serveConfiguration answers GET /configuration, a long-poll when since and
// wait are given.
func (s *Server) serveConfiguration(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var wait time.Duration
	if q.Has("wait") {
		d, err := time.ParseDuration(q.Get("wait"))
		if err != nil || d < 0 {
			http.Error(w, fmt.Sprintf("bad wait %q: want a Go duration like 30s (at most %s)", q.Get("wait"), maxWait), http.StatusBadRequest)
			return
		}
		wait = min(d, maxWait)
	}
	cur := s.cur.Load()
	if !q.Has("since") {
		writeServed(w, cur)
		return
	}
	since, err := strconv.ParseInt(q.Get("since"), 10, 64)
	if err != nil || since < 0 {
		http.Error(w, fmt.Sprintf("bad since %q: want an epoch, microseconds since the Unix epoch", q.Get("since")), http.StatusBadRequest)
		return
	}
	if cur.epoch <= since && wait > 0 {
		cur = s.waitNewer(r.Context(), cur, since, wait)
		if cur == nil {
			return // the client is gone
		}
	}
	if cur.epoch > since {
		writeServed(w, cur)
		return
	}
	w.Header().Set("X-Timestamp", strconv.FormatInt(cur.epoch, 10))
	w.WriteHeader(http.StatusNotModified)
}

// waitNewer waits until a configuration with an epoch above since is served,
// wait ends or the Server shuts down, and returns what is served then; nil
// when ctx ends first.
func (s *Server) waitNewer(ctx context.Context, cur *served, since int64, wait time.Duration) *served {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	for cur.epoch <= since {
		select {
		case <-cur.changed:
			cur = s.cur.Load()
		case <-t.C:
			return s.cur.Load()
		case <-s.stopping:
			return s.cur.Load()
		case <-ctx.Done():
			return nil
		}
	}
	return cur
}

// writeServed answers 200 with the configuration of cur.
func writeServed(w http.ResponseWriter, cur *served) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Timestamp", strconv.FormatInt(cur.epoch, 10))
	h.Set("Content-Length", strconv.Itoa(len(cur.body)))
	_, _ = w.Write(cur.body)
}

// masterAddr returns the address of cfg's master coordinator when it is not
// the coordinator id.
func masterAddr(cfg *config.Config, id string) (string, bool) {
	if cfg.MasterCoordinator == "" || cfg.MasterCoordinator == id {
		return "", false
	}
	i := slices.IndexFunc(cfg.Coordinators, func(c config.Coordinator) bool { return c.ID == cfg.MasterCoordinator })
	if i < 0 {
		return "", false
	}
	return cfg.Coordinators[i].Addr(), true
}
