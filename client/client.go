package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coord"
	"github.com/takodb/tako/internal/coordinator"
	"github.com/takodb/tako/internal/health"
	"github.com/takodb/tako/internal/hlc"
	"github.com/takodb/tako/internal/record"
	"github.com/takodb/tako/internal/tlsconf"
	"github.com/takodb/tako/internal/wire"
)

// Errors returned by the Client's methods.
var (
	// ErrNotFound: the key has no version, or its newest version is a
	// delete or a value that expired.
	ErrNotFound = errors.New("tako: not found")
	// ErrUnavailable: no replica of the key could reach its quorum.
	ErrUnavailable = errors.New("tako: too few replicas available")
	// ErrBadRequest: the cluster refused the request as invalid.
	ErrBadRequest = errors.New("tako: bad request")
	// ErrTooLarge: the value is larger than the cluster's max_value_size.
	ErrTooLarge = errors.New("tako: value too large")
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("tako: client closed")
	// ErrUnauthorized: the cluster has an auth section, and the client
	// presented no token (Options.Token) or one it does not
	// list.
	ErrUnauthorized = errors.New("tako: unauthorized")
	// ErrForbidden: the client's token does not have the role the request
	// needs (read for Get and Where, write for Put and Delete).
	ErrForbidden = errors.New("tako: forbidden")
	// ErrInsufficientStorage: the write needs replicas whose disks are
	// nearly full; they take writes again by themselves once space is
	// freed. Reads go on.
	ErrInsufficientStorage = errors.New("tako: insufficient storage")
)

// Version is one version of a key.
type Version struct {
	Timestamp int64 // microseconds since the Unix epoch
	Deleted   bool  // the key was deleted at Timestamp
	Value     []byte
	// ExpiresAt is when the value expires (microseconds since the Unix
	// epoch); 0: never.
	ExpiresAt int64
	// Expired says the value expired (by the client's clock) before the
	// read: the key is absent.
	Expired bool
}

// WriteResult is the outcome of a Put or Delete.
type WriteResult struct {
	// Timestamp of the stored version, or, when Superseded, of the newer
	// version that won.
	Timestamp int64
	// Superseded: a newer write or delete of the key already existed, and
	// nothing changed. Only a write with the caller's own timestamp (PutAt,
	// DeleteAt) is superseded; a write the cluster stamps (Put, Delete) is
	// stamped above every version acknowledged before it, and never is.
	Superseded bool
	// ExpiresAt is when the stored value expires (PutTTL, PutExpiring:
	// microseconds since the Unix epoch); 0 when it never does, and when
	// Superseded.
	ExpiresAt int64
}

// Options configure a Client. The zero value is ready to use.
type Options struct {
	// Timeout bounds one attempt at one node when the client sends a
	// request to a node that coordinates it (Forward, a read token, a
	// configuration the nodes refused, see the package doc, and Purge). Zero means the deployment's
	// request_timeout plus a tenth: the coordinating node gives up on its
	// own slow replicas after request_timeout and answers, so only a node
	// that is itself down makes the attempt time out. Such a node is then
	// marked down and skipped until a probe answers: it costs one timeout,
	// once. When the client coordinates a request itself, each replica's
	// answer is bounded by the deployment's request_timeout.
	Timeout time.Duration
	// Logger receives connection errors. Nil discards them.
	Logger *slog.Logger
	// TLS, when not nil, is the TLS configuration the client dials the
	// nodes with. When nil and the configuration has a tls section, the
	// client loads its files (see New); otherwise it uses plain TCP.
	TLS *tls.Config
	// Token is presented to every node the client connects to, and to
	// the coordinators that Dial asks: when the configuration has an auth
	// section, the nodes serve only requests that a token it lists allows
	// (read: Get and Where; write: also Put and Delete). Empty: no token.
	// The client reads no environment variable: a program that keeps its
	// token in $TAKO_TOKEN passes os.Getenv("TAKO_TOKEN").
	Token string
	// CoordinatorTLS, when not nil, verifies the coordinators that Dial
	// asks over HTTPS; nil asks them over plain HTTP.
	CoordinatorTLS *tls.Config
	// Forward makes the client send each request to one replica of the
	// key, which coordinates it across the key's replicas, instead of
	// coordinating it itself (the default, see the package doc). Forwarding
	// costs a hop, and a request waits for the replica it went to. A client
	// without a token of the write role forwards whatever this says (a read
	// token cannot write back what a read finds behind), and so does one
	// whose configuration the nodes refused (see SetConfigAt), until it
	// learns a newer one.
	Forward bool
	// Observer, when set, is told what the requests the client
	// coordinated itself did (see Observer); nil tells nothing.
	Observer Observer
	// Dial (the option, not the function), when not nil, opens the client's connections to the nodes
	// instead of TCP (a whole cluster in one process: internal/simnet).
	// Nil dials TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// CacheDir is where a client made by the function Dial keeps the last
	// configuration it adopted, to start from when no coordinator answers
	// (as nodes and proxies do). Empty: a temporary directory, removed
	// by Close, so that such a client needs a coordinator to start.
	CacheDir string
	// Wall is the wall clock that the client's timestamps follow when it
	// stamps the writes it coordinates. Nil: time.Now. A simulated
	// cluster gives each client a clock of its own, to jump it.
	Wall func() time.Time
}

// Observer counts what the requests a client coordinates itself
// (the default, see Options.Forward) did, for metrics. Its methods are called
// concurrently and must not block.
type Observer interface {
	// Read is called once per coordinated read with its outcome ("ok",
	// "unavailable") and how long it took.
	Read(outcome string, took time.Duration)
	// Write is called once per coordinated write with its outcome ("ok",
	// "superseded", "no_space", "unavailable"), and with
	// "stamped_without_quorum" for a write stamped without hearing from a
	// read quorum.
	Write(outcome string, took time.Duration)
	// ReadRepair is called per replica a read wrote back to ("ok",
	// "failed"), and with "blocking" when a read had to settle first.
	ReadRepair(outcome string)
	// Fenced is called when a node refused a request because the
	// client's configuration is behind the node's, and a node
	// coordinated it instead.
	Fenced()
}

// Client sends requests to a Tako cluster. Create it with New or Open.
type Client struct {
	opts   Options
	cfg    atomic.Pointer[config.Config]
	pool   *wire.Pool
	peers  health.Set
	next   atomic.Uint64 // spreads requests over a key's replicas
	closed atomic.Bool
	// tls holds the certificates of the configuration's tls section when
	// the client loaded them, and tlsErr why it could not: then every
	// request fails with it.
	tls    *tlsconf.Reloader
	tlsErr error
	// stopFollowing, set by Dial, stops the goroutines that follow the
	// coordinators and waits for them.
	stopFollowing func()

	// epoch is the coordinator's epoch of cfg (0: unknown, a file): the
	// fenced requests of a coordinating client carry it. SetConfigAt
	// stores cfg before epoch, and a request loads epoch before cfg, so a
	// request never pairs an older configuration with a newer epoch.
	epoch atomic.Int64
	// refusedBelow is one more than the newest epoch whose requests the
	// nodes refused (0: none): the client forwards every request while its
	// epoch is below it, instead of paying for a refusal each time.
	refusedBelow atomic.Int64
	// env is what the coordinator of each request (coordinator) needs;
	// clock stamps the writes the cluster stamps.
	env   coord.Env
	clock *hlc.Clock
	// The background work of coord (answers that arrive after the quorum,
	// read repair): bg is its context, ended by Close, which then waits
	// for it.
	bgMu     sync.Mutex // guards bgClosed and bgWork.Add
	bgClosed bool
	bgWork   sync.WaitGroup
	bg       context.Context
	bgCancel context.CancelFunc
}

// New returns a client of the cluster that cfg describes. When cfg has a
// tls section and opts.TLS is nil, New loads the section's files and the
// client dials with mutual TLS, presenting the section's certificate; if
// they cannot be loaded, every request fails with the reason (Open reports
// it at once).
func New(cfg *config.Config, opts Options) *Client {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{opts: opts}
	c.cfg.Store(cfg)
	dial := wire.DialOptions{MaxFrameSize: frameSize(cfg), Logger: opts.Logger, TLS: opts.TLS, Token: opts.Token, Dial: opts.Dial}
	if opts.TLS == nil && cfg.TLS != nil {
		cert, key := cfg.TLS.For("client")
		c.tls, c.tlsErr = tlsconf.Load(cfg.TLS.CA, cert, key)
		if c.tlsErr != nil {
			c.tlsErr = fmt.Errorf("tako: the configuration's tls section: %w", c.tlsErr)
		} else {
			dial.TLS = c.tls.ClientConfig()
		}
	}
	c.pool = wire.NewPool(dial)
	c.clock = hlc.New(opts.Wall)
	c.bg, c.bgCancel = context.WithCancel(context.Background())
	c.env = coord.Env{
		Now: c.clock.Now,
		Stored: func(ts int64) error {
			return hlc.Check(ts, c.clock.Wall(), c.cfg.Load().Active.MaxTimestampAhead)
		},
		Go:     c.goBackground,
		Logger: opts.Logger,
	}
	if opts.Observer != nil {
		c.env.Observer = opts.Observer
	}
	return c
}

// goBackground runs f as background work of the client, until Close.
func (c *Client) goBackground(f func(ctx context.Context)) bool {
	c.bgMu.Lock()
	defer c.bgMu.Unlock()
	if c.bgClosed {
		return false
	}
	c.bgWork.Go(func() { f(c.bg) })
	return true
}

// Open returns a client of the cluster that the configuration file at path
// describes.
func Open(path string, opts Options) (*Client, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	c := New(cfg, opts)
	if err := c.Err(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Dial returns a client of the cluster whose coordinators are at
// coordinators (HOST:PORT each; one is enough, the client learns the others
// from the configuration). It waits until a coordinator answers with a
// configuration, or until ctx ends; then it follows every newer one, as
// nodes and proxies do, until Close. With opts.CacheDir it starts from the
// configuration cached there when no coordinator answers.
//
// The client's connections are set up from the first configuration: a
// change of its tls section or of max_value_size needs a new client.
func Dial(ctx context.Context, coordinators []string, opts Options) (*Client, error) {
	dir, temporary := opts.CacheDir, false
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "tako-client-"); err != nil {
			return nil, fmt.Errorf("tako: a directory for the configuration: %w", err)
		}
		temporary = true
	}
	removeDir := func() {
		if temporary {
			os.RemoveAll(dir)
		}
	}
	w, err := coordinator.NewWatcher(coordinator.WatcherOptions{
		Coordinators: coordinators, CacheDir: dir, Logger: opts.Logger, Token: opts.Token, TLS: opts.CoordinatorTLS,
	})
	if err != nil {
		removeDir()
		return nil, fmt.Errorf("tako: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.Run(runCtx) })
	stop := func() {
		cancel()
		wg.Wait()
		removeDir()
	}
	cfg, epoch, err := w.WaitFor(ctx, func(*config.Config) bool { return true })
	if err != nil {
		stop()
		return nil, fmt.Errorf("tako: no configuration from the coordinators %v: %w", coordinators, err)
	}
	c := New(cfg, opts)
	c.SetConfigAt(cfg, epoch)
	if err := c.Err(); err != nil {
		stop()
		c.Close()
		return nil, err
	}
	wg.Go(func() {
		for {
			changed := w.Changed()
			if cfg, epoch := w.Current(); cfg != c.Config() {
				c.SetConfigAt(cfg, epoch)
			}
			select {
			case <-changed:
			case <-runCtx.Done():
				return
			}
		}
	})
	c.stopFollowing = stop
	return c, nil
}

// Err returns why the client cannot send any request (the files of the
// configuration's tls section could not be loaded), or nil.
func (c *Client) Err() error { return c.tlsErr }

// ErrNoTLS is returned by ReloadTLS when the client did not load the
// certificates of a tls section.
var ErrNoTLS = errors.New("tako: the client did not load a tls section")

// ReloadTLS reads the certificate and key files of the configuration's
// tls section again, when New loaded them: new connections present the
// new certificate, open ones are kept. On error the client keeps its
// current certificate.
func (c *Client) ReloadTLS() error {
	if c.tls == nil {
		return ErrNoTLS
	}
	if err := c.tls.Reload(); err != nil {
		return fmt.Errorf("tako: %w", err)
	}
	return nil
}

// SetConfig makes the client follow a new configuration, of no known
// epoch (as from a file). Requests in flight finish with the one they
// started with.
func (c *Client) SetConfig(cfg *config.Config) { c.SetConfigAt(cfg, 0) }

// SetConfigAt makes the client follow cfg, the configuration a
// coordinator serves as epoch. A client that coordinates its own requests
// places them by the epoch of its configuration: the nodes refuse them
// when they place keys by a newer one, and the client then lets a node
// coordinate each request until it follows a configuration of a newer
// epoch than the one refused.
func (c *Client) SetConfigAt(cfg *config.Config, epoch int64) {
	old := c.cfg.Swap(cfg)
	c.epoch.Store(epoch)
	// The nodes cfg adds may still be starting: requests that cannot do
	// without one wait for it (health.Peer.Join).
	var added []string
	for _, nd := range config.AddedNodes(old, cfg) {
		added = append(added, nd.ID)
	}
	c.peers.Join(added, time.Now().Add(health.JoinPatience))
}

// Config returns the configuration the client follows.
func (c *Client) Config() *config.Config { return c.cfg.Load() }

// Close closes the client's connections. It is idempotent.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	if c.stopFollowing != nil {
		c.stopFollowing()
	}
	c.bgMu.Lock()
	c.bgClosed = true
	c.bgMu.Unlock()
	c.bgCancel()
	err := c.pool.Close() // fails the calls still under way
	c.bgWork.Wait()
	return err
}

func frameSize(cfg *config.Config) int { return wire.FrameSizeFor(cfg.LargestMaxValueSize()) }

// Get returns the newest version of key. For a deleted key it returns the
// tombstone's Version (Deleted set) together with ErrNotFound; for a key
// whose value expired (by the client's clock: see docs/contract-notes.md,
// "Keys that expire") the expired Version (Expired set, its Value nil)
// together with ErrNotFound.
func (c *Client) Get(ctx context.Context, key []byte) (Version, error) {
	var rec record.Record
	var found bool
	epoch, cfg, err := c.check(key)
	if err != nil {
		return Version{}, err
	}
	coordinated := false
	if c.coordinates(cfg, epoch) {
		rec, found, err = c.coordinator(epoch).Read(ctx, cfg, key, cfg.Active.ReadRepair)
		switch {
		case errors.Is(err, coord.ErrStaleView):
			// The nodes place keys by a newer configuration: one of
			// them coordinates the read instead.
			c.fenced(epoch)
		case err != nil:
			return Version{}, coordError(err)
		default:
			coordinated = true
		}
	}
	if !coordinated {
		resp, err := c.do(ctx, &wire.Request{Op: wire.OpGet, Key: key})
		if err != nil {
			return Version{}, err
		}
		rec, found = record.Record(resp.Record), resp.Found
	}
	if !found {
		return Version{}, ErrNotFound
	}
	v := Version{Timestamp: rec.Timestamp, Deleted: rec.Tombstone, Value: rec.Value, ExpiresAt: rec.ExpiresAt}
	if rec.Expired(c.clock.Wall()) {
		v.Expired, v.Value = true, nil
	}
	if v.Deleted || v.Expired {
		return v, ErrNotFound
	}
	return v, nil
}

// Put stores value under key, stamped by the cluster: the write is
// stamped above every version acknowledged before it (the client's clock,
// or one more than the newest version a read quorum of the replicas holds),
// so each key behaves as a linearizable register for such writes, and a
// Put is never Superseded.
func (c *Client) Put(ctx context.Context, key, value []byte) (WriteResult, error) {
	return c.PutAt(ctx, key, value, 0)
}

// PutAt stores value under key at timestamp ts (microseconds since the Unix
// epoch); ts 0 lets the cluster stamp it, as Put does. A write at a
// timestamp of the caller's loses to a newer version (Superseded).
func (c *Client) PutAt(ctx context.Context, key, value []byte, ts int64) (WriteResult, error) {
	return c.write(ctx, key, wire.Record{Timestamp: ts, Value: value})
}

// Now returns the client's clock (Options.Wall, else the machine's), in
// microseconds since the Unix epoch: the clock that turns a TTL into an
// expiry and judges whether a value read has expired.
func (c *Client) Now() int64 { return c.clock.Wall() }

// PutTTL stores value under key, stamped by the cluster as Put, to expire
// ttl after now by the client's clock: from then on every read answers
// the key as absent (ErrNotFound, Expired set), until a newer write. A
// newer write without a TTL makes the key permanent again. ttl must be
// positive and at most the deployment's max_ttl (else ErrBadRequest).
func (c *Client) PutTTL(ctx context.Context, key, value []byte, ttl time.Duration) (WriteResult, error) {
	if ttl <= 0 {
		return WriteResult{}, fmt.Errorf("%w: a TTL of %s: want a positive one", ErrBadRequest, ttl)
	}
	return c.PutExpiring(ctx, key, value, 0, c.clock.Wall()+ttl.Microseconds())
}

// PutExpiring stores value under key at timestamp ts (0: stamped by the
// cluster, as Put) to expire at expiresAt, microseconds since the Unix
// epoch (0: never, as PutAt). An expiry that is not after now, or further
// ahead than the deployment's max_ttl, is refused with ErrBadRequest.
func (c *Client) PutExpiring(ctx context.Context, key, value []byte, ts, expiresAt int64) (WriteResult, error) {
	if expiresAt != 0 {
		if err := hlc.CheckExpiry(expiresAt, c.clock.Wall(), c.cfg.Load().Active.MaxTTL); err != nil {
			return WriteResult{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
	}
	res, err := c.write(ctx, key, wire.Record{Timestamp: ts, Value: value, ExpiresAt: expiresAt})
	if err == nil && !res.Superseded {
		res.ExpiresAt = expiresAt
	}
	return res, err
}

// Delete deletes key with a tombstone stamped by the cluster, as Put.
func (c *Client) Delete(ctx context.Context, key []byte) (WriteResult, error) {
	return c.DeleteAt(ctx, key, 0)
}

// DeleteAt deletes key with a tombstone at timestamp ts (0: stamped by the
// cluster).
func (c *Client) DeleteAt(ctx context.Context, key []byte, ts int64) (WriteResult, error) {
	return c.write(ctx, key, wire.Record{Timestamp: ts, Tombstone: true})
}

// write stores rec on the key's replicas (and stamps it when
// rec.Timestamp is 0): coordinated by the client itself when it may (see
// coordinates), else through one of the replicas, which coordinates it.
func (c *Client) write(ctx context.Context, key []byte, rec wire.Record) (WriteResult, error) {
	epoch, cfg, err := c.check(key)
	if err != nil {
		return WriteResult{}, err
	}
	// stampedHere is set when the client stamped the write and it may
	// have reached replicas: if a node must coordinate it after all, it
	// goes with that timestamp (so that it is one version, wherever it
	// landed).
	stampedHere := false
	if c.coordinates(cfg, epoch) {
		if max := cfg.Active.MaxValueSize; int64(len(rec.Value)) > max {
			return WriteResult{}, fmt.Errorf("%w: the value is %d bytes, larger than max_value_size (%d bytes)", ErrTooLarge, len(rec.Value), max)
		}
		if rec.Timestamp != 0 {
			if err := hlc.Check(rec.Timestamp, c.clock.Wall(), cfg.Active.MaxTimestampAhead); err != nil {
				return WriteResult{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
			}
		}
		res, err := c.coordinator(epoch).Write(ctx, cfg, key, record.Record(rec))
		switch {
		case errors.Is(err, coord.ErrStaleView):
			// The nodes place keys by a newer configuration: one of
			// them coordinates the write instead, with the timestamp
			// this one may already have reached replicas with.
			c.fenced(epoch)
			if rec.Timestamp == 0 && res.Timestamp != 0 {
				rec.Timestamp, stampedHere = res.Timestamp, true
			}
		case err != nil:
			return WriteResult{}, coordError(err)
		default:
			return WriteResult{Timestamp: res.Timestamp, Superseded: res.Superseded}, nil
		}
	}
	resp, err := c.do(ctx, &wire.Request{Op: wire.OpPut, Key: key, Record: rec})
	if err != nil {
		return WriteResult{}, err
	}
	return forwardedResult(resp, rec, stampedHere)
}

// forwardedResult is what a write that a node coordinated did, from the
// node's answer. A write the client stamped (stampedHere) that meets a
// newer version fails: the node coordinated it as a write with its own
// timestamp and stored it nowhere, and the newer version may be that of a
// write that failed, held by one replica, and lost with it; reporting
// success would acknowledge a write no replica holds (the simulator found
// it, docs/simulator-design.md). Whether the write landed on a replica
// before the node refused the client's view is unknown: an unknown
// outcome, as any failed write.
func forwardedResult(resp *wire.Response, rec wire.Record, stampedHere bool) (WriteResult, error) {
	switch {
	case resp.Outcome == wire.OutcomeStale && stampedHere:
		return WriteResult{}, fmt.Errorf("%w: the write, stamped %d before the nodes' configuration changed, met a newer version (%d) when a node coordinated it; its outcome is unknown: write again",
			ErrUnavailable, rec.Timestamp, resp.Current.Timestamp)
	case resp.Outcome == wire.OutcomeStale:
		return WriteResult{Timestamp: resp.Current.Timestamp, Superseded: true}, nil
	case resp.Outcome == wire.OutcomeWritten, resp.Outcome == wire.OutcomeUnchanged:
		return WriteResult{Timestamp: resp.Current.Timestamp}, nil
	}
	return WriteResult{}, fmt.Errorf("tako: unexpected outcome %v", resp.Outcome)
}

// fenced records that the nodes refused a request that the client placed
// by the configuration of epoch, because they place keys by a newer one:
// the client forwards every request until it follows a newer
// configuration than that. The observer is told of each refusal.
func (c *Client) fenced(epoch int64) {
	if c.opts.Observer != nil {
		c.opts.Observer.Fenced()
	}
	for {
		below := c.refusedBelow.Load()
		if below > epoch {
			return
		}
		if c.refusedBelow.CompareAndSwap(below, epoch+1) {
			c.opts.Logger.Info("the nodes place keys by a newer configuration than this client's: it lets a node coordinate each request until it follows a newer one",
				"epoch", epoch)
			return
		}
	}
}

// probe pings nd in the background, bounded by timeout: its answer marks
// it up, its silence keeps it down.
func (c *Client) probe(nd config.Node, timeout time.Duration) {
	c.goBackground(func(bg context.Context) {
		ctx, cancel := context.WithTimeout(bg, timeout)
		defer cancel()
		peer := c.peers.Peer(nd.ID)
		if _, err := c.pool.Call(ctx, nd.BinaryAddr(), &wire.Request{Op: wire.OpPing}); err != nil {
			if wire.PeerFault(err) {
				peer.Failure()
			}
			return
		}
		peer.Success()
	})
}

// check returns the configuration a request for key starts with and its
// epoch (loaded first: see Client.epoch), or why the request cannot be
// sent at all.
func (c *Client) check(key []byte) (int64, *config.Config, error) {
	switch {
	case c.closed.Load():
		return 0, nil, ErrClosed
	case c.tlsErr != nil:
		return 0, nil, c.tlsErr
	case len(key) == 0:
		return 0, nil, fmt.Errorf("%w: the key is empty", ErrBadRequest)
	case len(key) > wire.MaxKeySize:
		return 0, nil, fmt.Errorf("%w: the key is %d bytes, larger than the limit of %d", ErrBadRequest, len(key), wire.MaxKeySize)
	}
	epoch := c.epoch.Load()
	return epoch, c.cfg.Load(), nil
}

// coordinates reports whether the client coordinates a request placed by
// cfg, of epoch, itself: it sends it to every replica of the key and waits
// for the quorum, with no node in between. Not with Options.Forward, nor
// while the nodes refused a request of this epoch (see fenced), nor
// without a token of the write role at least when cfg has an auth section:
// coordinating takes writing to single replicas (FencedPut: a write
// stamped by the client, and what a read writes back). Otherwise the
// client sends each request to one replica of the key, which coordinates
// it.
func (c *Client) coordinates(cfg *config.Config, epoch int64) bool {
	return !c.opts.Forward && epoch >= c.refusedBelow.Load() && cfg.Auth.Holds(c.opts.Token, auth.Write) == nil
}

// coordError is the client's error for what the coordinator of a
// request answered.
func coordError(err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, record.ErrUnavailable):
		return err
	case errors.Is(err, wire.ErrUnauthorized):
		return fmt.Errorf("%w: %w", ErrUnauthorized, err)
	case errors.Is(err, wire.ErrForbidden):
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	case errors.Is(err, record.ErrInsufficientStorage):
		return fmt.Errorf("%w: %w", ErrInsufficientStorage, err)
	case errors.Is(err, wire.ErrBadRequest):
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	case errors.Is(err, wire.ErrTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return fmt.Errorf("%w: %w", ErrUnavailable, err)
}

// mayHaveApplied reports whether a write that failed with err may have
// been applied all the same: it was sent, and the node did not say that
// it refused it before doing anything. Such a write is not sent to
// another node: the cluster stamps each attempt of a write afresh, so a
// first attempt that a slow or frozen node carries out late, after a
// second one was acknowledged, would apply the write twice, the second
// time over writes that came after it. The caller sees the failure and
// decides, as with any write whose fate is unknown.
func mayHaveApplied(req *wire.Request, err error) bool {
	if req.Op != wire.OpPut || errors.Is(err, wire.ErrUnreachable) {
		return false
	}
	var we *wire.Error
	if errors.As(err, &we) && (we.Code == wire.CodeShuttingDown || we.Code == wire.CodeOverloaded) {
		return false
	}
	return true
}

// ambiguous is the error of a write that failed at node id with err and
// may have been applied.
func ambiguous(id string, err error) error {
	return fmt.Errorf("%w: %s: %w (the write may or may not have been applied; it was not sent to another node, which would apply it a second time)", ErrUnavailable, id, err)
}

// do sends req to the replicas of its key in turn, starting at a rotating
// one and skipping those marked down, until one answers. Refusals of the
// request itself (bad request, too large) are final; a replica that cannot
// reach its quorum or does not answer makes the client try the next, for a
// read; for a write only when the write surely was not applied (see
// mayHaveApplied).
func (c *Client) do(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	_, cfg, err := c.check(req.Key)
	if err != nil {
		return nil, err
	}
	replicas := cfg.Replicas(nil, req.Key)
	timeout := c.opts.Timeout
	if timeout == 0 {
		timeout = cfg.Active.RequestTimeout + cfg.Active.RequestTimeout/10
	}
	start := int(c.next.Add(1) % uint64(len(replicas)))
	var errs []error
	var skipped []int
	try := func(idx int) (*wire.Response, error, bool) {
		nd := replicas[idx]
		peer := c.peers.Peer(nd.ID)
		actx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := c.pool.Call(actx, nd.BinaryAddr(), req)
		cancel()
		if err == nil {
			peer.Success()
			return resp, nil, true
		}
		if ctx.Err() != nil {
			return nil, ctx.Err(), true
		}
		var we *wire.Error
		if errors.As(err, &we) {
			switch we.Code {
			case wire.CodeBadRequest:
				return nil, fmt.Errorf("%w: %s", ErrBadRequest, we.Message), true
			case wire.CodeTooLarge:
				return nil, fmt.Errorf("%w: %s", ErrTooLarge, we.Message), true
			case wire.CodeUnauthorized:
				return nil, fmt.Errorf("%w: node %s: %s", ErrUnauthorized, nd.ID, we.Message), true
			case wire.CodeForbidden:
				return nil, fmt.Errorf("%w: node %s: %s", ErrForbidden, nd.ID, we.Message), true
			case wire.CodeInsufficientStorage:
				// Any node would meet the same full replicas.
				return nil, fmt.Errorf("%w: node %s: %s", ErrInsufficientStorage, nd.ID, we.Message), true
			case wire.CodeUnavailable:
				// The node answered; its view of the replicas did not
				// reach the quorum. Another node may see more, but a
				// write may have reached some replicas: see below.
				errs = append(errs, fmt.Errorf("%s: %w", nd.ID, err))
				if mayHaveApplied(req, err) {
					return nil, ambiguous(nd.ID, err), true
				}
				return nil, nil, false
			}
		}
		peer.Failure()
		errs = append(errs, fmt.Errorf("%s: %w", nd.ID, err))
		if mayHaveApplied(req, err) {
			return nil, ambiguous(nd.ID, err), true
		}
		return nil, nil, false
	}
	// First the replicas not marked down, then, rather than fail while any
	// replica might answer, the ones that are. A node marked down is
	// probed once per backoff: by the read that comes along then, but
	// never by a write, whose fate a frozen node would make unknown (see
	// mayHaveApplied); a write that comes along instead has the node
	// pinged in the background and goes elsewhere.
	for i := range replicas {
		idx := (start + i) % len(replicas)
		peer := c.peers.Peer(replicas[idx].ID)
		if up, _ := peer.Up(); !up && req.Op == wire.OpPut {
			if peer.Allow() {
				c.probe(replicas[idx], timeout)
			}
			skipped = append(skipped, idx)
			continue
		}
		if !peer.Allow() {
			skipped = append(skipped, idx)
			continue
		}
		if resp, err, done := try(idx); done {
			return resp, err
		}
	}
	for _, idx := range skipped {
		if resp, err, done := try(idx); done {
			return resp, err
		}
	}
	return nil, fmt.Errorf("%w: %w", ErrUnavailable, errors.Join(errs...))
}
