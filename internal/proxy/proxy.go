// Package proxy is Tako's HTTP proxy: the HTTP API of CONTRACT.md in front
// of a cluster, built on the Go client. It stores nothing; every request
// goes over the binary protocol to a replica of its key, which coordinates
// it.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/budget"
	"github.com/takodb/tako/internal/buildinfo"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/connlimit"
	"github.com/takodb/tako/internal/coordmetrics"
	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/httpserve"
	"github.com/takodb/tako/internal/tlsconf"
)

// Options configure a Proxy.
type Options struct {
	// ID names the proxy in logs. If blank, "p1".
	ID string
	// Config is the cluster configuration. Required.
	Config *config.Config
	// Addr is the HTTP listen address, HOST:PORT; a blank HOST listens on
	// every interface. Required.
	Addr string
	// Logger receives the proxy's logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Epoch is the coordinator's epoch of Config; 0 when it comes from a file.
	Epoch int64
	// Registry receives the proxy's metrics and is served on /metrics. If
	// nil, a new registry with the Go and process collectors is used.
	Registry *prometheus.Registry
	// Token is what the proxy presents to the nodes' binary ports. When
	// Config has an auth section, it must be a token of the write role or
	// above that the section lists, or New fails.
	Token string
}

// Proxy serves the HTTP API for a cluster.
type Proxy struct {
	id     string
	addr   string
	logger *slog.Logger
	client *client.Client
	api    *httpapi.Handler

	epoch atomic.Int64 // of the configuration, as the coordinator numbered it

	// limits are the active deployment's when the proxy started; conns
	// bounds the HTTP listener's connections.
	limits config.Limits
	conns  *connlimit.Limiter

	// tls holds the certificate of the configuration's tls section that
	// the HTTP port serves HTTPS with; nil without one (plain HTTP).
	tls *tlsconf.Reloader

	// token is what the proxy presents to the nodes (Options.Token).
	token string

	mu    sync.Mutex // guards bound
	bound net.Addr
}

// New returns a proxy for the cluster of opts.Config.
func New(opts Options) (*Proxy, error) {
	if opts.Config == nil || opts.Addr == "" {
		return nil, errors.New("proxy: Options.Config and Addr are required")
	}
	if opts.ID == "" {
		opts.ID = "p1"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	p := &Proxy{
		id:     opts.ID,
		addr:   opts.Addr,
		logger: opts.Logger,
		client: client.New(opts.Config, client.Options{Logger: opts.Logger, Token: opts.Token,
			Observer: newCoordMetrics(reg)}),
		token: opts.Token,
	}
	if err := opts.Config.Auth.Holds(opts.Token, auth.Write); err != nil {
		p.client.Close()
		return nil, fmt.Errorf("proxy %s: the proxy presents its token to the nodes: %w (-token-file FILE or $TAKO_TOKEN)", p.id, err)
	}
	if err := p.client.Err(); err != nil {
		p.client.Close()
		return nil, fmt.Errorf("proxy %s: %w", p.id, err)
	}
	if t := opts.Config.TLS; t != nil {
		cert, key := t.For("proxy")
		r, err := tlsconf.Load(t.CA, cert, key)
		if err != nil {
			p.client.Close()
			return nil, fmt.Errorf("proxy %s: the configuration's tls section: %w", p.id, err)
		}
		p.tls = r
		reg.MustRegister(r.Collectors()...)
	}
	p.epoch.Store(opts.Epoch)
	p.client.SetConfigAt(opts.Config, opts.Epoch)
	reg.MustRegister(buildinfo.Collector("tako-proxy"))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tako_config_epoch",
		Help: "Epoch of the configuration this process follows (0: read from a file).",
	}, func() float64 { return float64(p.epoch.Load()) }))
	p.limits = opts.Config.Active.Limits
	p.conns = connlimit.New("http", p.limits.MaxConnections, true)
	reg.MustRegister(p.conns.Collectors()...)
	apiOpts := httpapi.Options{Backend: backend{p.client}, Registry: reg, Logger: opts.Logger,
		MaxInFlight: p.limits.MaxRequestsInFlight, Auth: func() *auth.Tokens { return p.client.Config().Auth }}
	if p.limits.MaxBytesInFlight > 0 {
		// The bodies the proxy holds while it forwards them.
		apiOpts.Budget = budget.New(p.limits.MaxBytesInFlight, budget.DefaultWait)
	}
	p.api = httpapi.NewHandler(apiOpts)
	return p, nil
}

// SetConfig makes the proxy route by a new configuration; requests in
// flight finish with the one they started with.
func (p *Proxy) SetConfig(cfg *config.Config, epoch int64) {
	p.client.SetConfigAt(cfg, epoch)
	p.epoch.Store(epoch)
	if err := cfg.Auth.Holds(p.token, auth.Write); err != nil {
		p.logger.Error("the new configuration's auth section does not list this proxy's token with the write role at least: the nodes will refuse its requests; give it one with -token-file and restart it",
			"proxy", p.id, "epoch", epoch, "err", err)
		return
	}
	p.logger.Info("following a new configuration", "proxy", p.id, "epoch", epoch, "deployment", cfg.Active.Name)
}

// ReloadTLS reads the certificate files of the configuration's tls section
// again, for the nodes (see client.Client.ReloadTLS) and for the HTTPS
// port; client.ErrNoTLS without one.
func (p *Proxy) ReloadTLS() error {
	if err := p.client.ReloadTLS(); err != nil {
		return err
	}
	if p.tls != nil {
		if err := p.tls.Reload(); err != nil {
			return fmt.Errorf("proxy %s: the HTTPS certificate: %w", p.id, err)
		}
	}
	return nil
}

// Handler returns the proxy's HTTP handler.
func (p *Proxy) Handler() http.Handler { return p.api }

// Addr returns the bound HTTP address, or nil before Run bound it.
func (p *Proxy) Addr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.bound
}

// Run serves HTTP until ctx is done, then shuts down cleanly (requests in
// flight get up to 10 s) and closes the client. It returns an error when the
// address cannot be bound.
func (p *Proxy) Run(ctx context.Context) error {
	defer p.client.Close()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		return fmt.Errorf("proxy %s: listening for HTTP on %s: %w", p.id, p.addr, err)
	}
	p.mu.Lock()
	p.bound = ln.Addr()
	p.mu.Unlock()
	hopts := httpserve.Options{Handler: p.api, Limits: p.limits, Conns: p.conns, Logger: p.logger}
	if p.tls != nil {
		hopts.TLS = p.tls.HTTPServerConfig()
	}
	srv := httpserve.New(ln, hopts)
	cfg := p.client.Config()
	p.logger.Info("proxy serving", "proxy", p.id, "version", buildinfo.Version(), "http", srv.Addr().String(),
		"deployment", cfg.Active.Name, "nodes", len(cfg.Nodes()), "epoch", p.epoch.Load(), "tls", p.tls != nil)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve() }()
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("proxy %s: serving HTTP: %w", p.id, err)
	}
	p.logger.Info("proxy shutting down", "proxy", p.id)
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		p.logger.Warn("requests still in flight at shutdown were cut off", "proxy", p.id, "err", err)
	}
	<-serveErr
	p.logger.Info("proxy stopped", "proxy", p.id)
	return nil
}

// backend adapts the client to the HTTP API.
type backend struct{ c *client.Client }

var _ httpapi.Backend = backend{}

func (b backend) Get(ctx context.Context, key []byte) (httpapi.Version, error) {
	v, err := b.c.Get(ctx, key)
	if errors.Is(err, client.ErrNotFound) && (v.Deleted || v.Expired) {
		return httpapi.Version{Timestamp: v.Timestamp, Deleted: v.Deleted, Expired: v.Expired, ExpiresAt: v.ExpiresAt}, nil
	}
	if err != nil {
		return httpapi.Version{}, apiError(err)
	}
	return httpapi.Version{Timestamp: v.Timestamp, Value: v.Value, ExpiresAt: v.ExpiresAt}, nil
}

func (b backend) Stat(ctx context.Context, key []byte) (httpapi.Version, error) {
	return b.Get(ctx, key)
}

func (b backend) Put(ctx context.Context, key, value []byte, ts int64, exp httpapi.Expiry) (httpapi.WriteResult, error) {
	var res client.WriteResult
	var err error
	switch {
	case exp.TTL > 0:
		res, err = b.c.PutExpiring(ctx, key, value, ts, b.c.Now()+exp.TTL.Microseconds())
	case exp.At != 0:
		res, err = b.c.PutExpiring(ctx, key, value, ts, exp.At)
	default:
		res, err = b.c.PutAt(ctx, key, value, ts)
	}
	if err != nil {
		return httpapi.WriteResult{}, apiError(err)
	}
	return httpapi.WriteResult{Timestamp: res.Timestamp, Superseded: res.Superseded, ExpiresAt: res.ExpiresAt}, nil
}

func (b backend) Delete(ctx context.Context, key []byte, ts int64) (httpapi.WriteResult, error) {
	res, err := b.c.DeleteAt(ctx, key, ts)
	if err != nil {
		return httpapi.WriteResult{}, apiError(err)
	}
	return httpapi.WriteResult{Timestamp: res.Timestamp, Superseded: res.Superseded}, nil
}

func (b backend) Ready() bool { return b.c.Config() != nil }

// The proxy serves GET /where/KEY.
var _ httpapi.Locator = backend{}

var _ httpapi.Purger = backend{}

// Purge asks a node of key to remove it from every replica
// (client.Client.Purge).
func (b backend) Purge(ctx context.Context, key []byte) (httpapi.PurgeResult, error) {
	held, err := b.c.Purge(ctx, key)
	if err != nil {
		return httpapi.PurgeResult{}, apiError(err)
	}
	return httpapi.PurgeResult{Held: held}, nil
}

// Where asks every replica of key for its own record, over the client's
// connections (client.Client.Where).
func (b backend) Where(ctx context.Context, key []byte) (httpapi.Placement, error) {
	p, err := b.c.Where(ctx, key)
	if err != nil {
		return httpapi.Placement{}, apiError(err)
	}
	out := httpapi.Placement{Key: string(p.Key), Hash: p.Hash}
	for _, d := range p.Deployments {
		dp := httpapi.DeploymentPlacement{Name: d.Name, Role: d.Role}
		for _, bk := range d.Buckets {
			bp := httpapi.BucketPlacement{Name: bk.Name, Nodes: make([]httpapi.ReplicaState, 0, len(bk.Replicas))}
			for _, r := range bk.Replicas {
				bp.Nodes = append(bp.Nodes, replicaState(r))
			}
			dp.Buckets = append(dp.Buckets, bp)
		}
		out.Deployments = append(out.Deployments, dp)
	}
	return out, nil
}

// replicaState is one replica's answer as /where shows it.
// coordMetrics counts what the requests the proxy coordinates did, with
// the names a node uses for those it coordinates, and those a node
// coordinated instead because the proxy's configuration was behind.
type coordMetrics struct {
	*coordmetrics.Metrics
	fenced prometheus.Counter
}

func newCoordMetrics(reg prometheus.Registerer) coordMetrics {
	m := coordMetrics{Metrics: coordmetrics.New(reg, "proxy"), fenced: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tako_fenced_requests_total",
		Help: "Requests a node refused because this proxy's configuration was behind the node's layout, which a node then coordinated. Many over a long time: the proxy does not hear from its coordinators.",
	})}
	reg.MustRegister(m.fenced)
	return m
}

// Fenced counts a request a node coordinated instead.
func (m coordMetrics) Fenced() { m.fenced.Inc() }

func replicaState(r client.ReplicaRecord) httpapi.ReplicaState {
	s := httpapi.ReplicaState{ID: r.NodeID, Binary: r.Addr, Found: r.Found, Timestamp: r.Timestamp, Deleted: r.Deleted, ExpiresAt: r.ExpiresAt, BrokenTimestamp: r.BrokenTimestamp}
	if r.Err != nil {
		s.Error = r.Err.Error()
	}
	return s
}

// MaxValueSize is the smallest max_value_size of the deployments a write
// goes to, so that no replica refuses what the proxy accepted.
func (b backend) MaxValueSize() int64 {
	cfg := b.c.Config()
	limit := cfg.Active.MaxValueSize
	if cfg.Target != nil && cfg.Target.MaxValueSize < limit {
		limit = cfg.Target.MaxValueSize
	}
	return limit
}

// apiError maps the client's errors to the HTTP API's.
func apiError(err error) error {
	switch {
	case errors.Is(err, client.ErrNotFound):
		return httpapi.ErrNotFound
	case errors.Is(err, client.ErrInsufficientStorage):
		return fmt.Errorf("%w: %v", httpapi.ErrInsufficientStorage, err)
	case errors.Is(err, client.ErrUnavailable):
		return fmt.Errorf("%w: %v", httpapi.ErrUnavailable, err)
	case errors.Is(err, client.ErrBadRequest), errors.Is(err, client.ErrTooLarge):
		return fmt.Errorf("%w: %s", httpapi.ErrBadRequest, httpapi.WithoutSentinel(err.Error(), client.ErrBadRequest))
	}
	return err
}
