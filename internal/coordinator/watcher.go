package coordinator

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/config"
)

// WatcherOptions configure a Watcher.
type WatcherOptions struct {
	// Coordinators are the addresses (HOST:PORT) of the coordinators to
	// ask, as given with -c; at least one. The Watcher also asks every
	// coordinator that its current configuration names, but never stops
	// asking these.
	Coordinators []string
	// CacheDir is the directory where the newest configuration is cached
	// (configuration.json) and that Run starts from; the programs pass
	// DIR/etc. It is created if need be. Required.
	CacheDir string
	// PollInterval is how often every coordinator is also asked with a
	// plain request, in case a long-poll hangs. If zero, 300s.
	PollInterval time.Duration
	// LongPollWait is how long each long-poll asks a coordinator to wait
	// for a newer configuration (at most 60s). If zero, 30s.
	LongPollWait time.Duration
	// Logger receives the Watcher's logs. If nil, logs are discarded.
	Logger *slog.Logger
	// Token is sent as a bearer token with every request: a token of the
	// admin role when the configuration has an auth section.
	Token string
	// Client makes the requests to the coordinators. If nil, a client
	// that gives up connecting after 5 s (and verifies coordinators with
	// TLS, when set); every request also has a deadline of its own, its
	// wait plus 5 s.
	Client *http.Client
	// TLS, when not nil, makes the Watcher ask the coordinators over
	// HTTPS (the coordinators of a configuration with a tls section),
	// verifying them with it: the -ca flag of tako-node and tako-proxy.
	// A Client given with it must verify the coordinators itself.
	TLS *tls.Config
}

// Watcher follows the configuration of a cluster's coordinators: it asks
// every coordinator it knows, adopts the valid configuration with the
// highest epoch, and caches it. Its methods are safe for concurrent use.
type Watcher struct {
	seeds     []string // the Coordinators of the options, normalized
	cacheDir  string
	pollEvery time.Duration
	wait      time.Duration
	log       *slog.Logger
	client    *http.Client
	ownClient bool
	scheme    string // "http", or "https" with WatcherOptions.TLS
	// waitLogFirst and waitLogEvery are when WaitFor first logs that it
	// waits, and how often it then does.
	waitLogFirst, waitLogEvery time.Duration

	// heard is closed once a coordinator answered (whatever its epoch):
	// from then on the current configuration is not only the cache's.
	heard     chan struct{}
	heardOnce sync.Once

	// cur is the configuration adopted. A *view is never modified: a new
	// configuration is published by storing a new one and closing the
	// changed channel of the old.
	cur atomic.Pointer[view]

	// adoptMu serializes adoptions: the check that an epoch is the
	// highest, the cache write and the publication happen under it, so
	// the cache never goes back.
	adoptMu sync.Mutex

	mu      sync.Mutex       // guards the fields below
	runCtx  context.Context  // Run's context; nil before Run
	stopped bool             // Run is stopping: no loop may start
	loops   map[string]*loop // the long-poll loops running, by address
	wg      sync.WaitGroup   // counts the goroutines that Run owns
}

// view is one adopted configuration.
type view struct {
	cfg     *config.Config // nil before any
	epoch   int64
	changed chan struct{} // closed when a newer configuration is adopted
}

// loop is the long-poll loop of one coordinator.
type loop struct {
	addr   string
	cancel context.CancelFunc
	// rejected is the highest epoch this coordinator offered that did
	// not validate; it is not asked for again.
	rejected atomic.Int64
}

// NewWatcher returns a Watcher of the coordinators of opts. Run starts it.
func NewWatcher(opts WatcherOptions) (*Watcher, error) {
	if len(opts.Coordinators) == 0 {
		return nil, errors.New("coordinator: WatcherOptions.Coordinators: at least one coordinator is required")
	}
	if opts.CacheDir == "" {
		return nil, errors.New("coordinator: WatcherOptions.CacheDir is required")
	}
	w := &Watcher{
		cacheDir:     opts.CacheDir,
		pollEvery:    opts.PollInterval,
		wait:         opts.LongPollWait,
		log:          opts.Logger,
		client:       opts.Client,
		scheme:       "http",
		waitLogFirst: time.Second,
		waitLogEvery: 10 * time.Second,
		loops:        make(map[string]*loop),
		heard:        make(chan struct{}),
	}
	for _, a := range opts.Coordinators {
		n, err := normalizeAddr(a)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(w.seeds, n) {
			w.seeds = append(w.seeds, n)
		}
	}
	if w.pollEvery <= 0 {
		w.pollEvery = 300 * time.Second
	}
	if w.wait <= 0 {
		w.wait = defaultWait
	}
	w.wait = min(w.wait, maxWait)
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	if opts.TLS != nil {
		w.scheme = "https"
	}
	if w.client == nil {
		w.client, w.ownClient = newClient(opts.TLS), true
	}
	w.client = auth.WithToken(w.client, opts.Token)
	w.cur.Store(&view{changed: make(chan struct{})})
	return w, nil
}

// Current returns the configuration adopted and its epoch; nil and 0 before
// any.
func (w *Watcher) Current() (*config.Config, int64) {
	v := w.cur.Load()
	return v.cfg, v.epoch
}

// Changed returns a channel that is closed when a configuration newer than
// the current one is adopted. Each adoption closes the channel and makes a
// new one, which the next call returns: call Changed, then Current, and wait
// on the channel to miss nothing.
func (w *Watcher) Changed() <-chan struct{} { return w.cur.Load().changed }

// Heard returns a channel that is closed once a coordinator has answered
// since Run started: the configuration adopted is then the newest that
// coordinator serves (or a newer one), not only the cached one.
func (w *Watcher) Heard() <-chan struct{} { return w.heard }

// markHeard closes the Heard channel, once.
func (w *Watcher) markHeard() { w.heardOnce.Do(func() { close(w.heard) }) }

// WaitFor blocks until the current configuration satisfies accept, and
// returns it with its epoch; or until ctx is done, and returns an error
// wrapping ctx.Err(). While it waits it logs at Info, after a second and
// then every 10 s, whom it asks and why it waits. accept is called with each
// configuration adopted and must not block.
func (w *Watcher) WaitFor(ctx context.Context, accept func(*config.Config) bool) (*config.Config, int64, error) {
	var t *time.Timer
	start := time.Now()
	for {
		v := w.cur.Load()
		if v.cfg != nil && accept(v.cfg) {
			return v.cfg, v.epoch, nil
		}
		if t == nil {
			t = time.NewTimer(w.waitLogFirst)
			defer t.Stop()
		}
		select {
		case <-v.changed:
		case <-t.C:
			reason := "no configuration yet"
			if v.cfg != nil {
				reason = fmt.Sprintf("the configuration of epoch %d is not the one awaited", v.epoch)
			}
			w.log.Info("waiting for a configuration", "asking", w.asking(), "reason", reason,
				"waited", time.Since(start).Round(time.Second))
			t.Reset(w.waitLogEvery)
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("coordinator: waiting for a configuration: %w", ctx.Err())
		}
	}
}

// asking returns the addresses of the coordinators the Watcher asks, sorted.
func (w *Watcher) asking() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.runCtx == nil {
		return slices.Sorted(slices.Values(w.seeds))
	}
	return slices.Sorted(maps.Keys(w.loops))
}

// Run starts from the cached configuration, if any, then follows the
// coordinators until ctx is done. It owns every goroutine it starts and
// returns once they all stopped. Run must be called once.
func (w *Watcher) Run(ctx context.Context) {
	w.mu.Lock()
	if w.runCtx != nil {
		w.mu.Unlock()
		panic("coordinator: Watcher.Run called twice")
	}
	w.runCtx = ctx
	w.mu.Unlock()

	switch cfg, epoch, err := LoadCache(w.cacheDir); {
	case err == nil:
		w.adoptMu.Lock()
		if epoch > w.cur.Load().epoch {
			w.publishLocked(cfg, epoch)
			w.log.Info(fmt.Sprintf("starting from the cached configuration, epoch %d", epoch), "dir", w.cacheDir)
		}
		w.adoptMu.Unlock()
	case isNotExist(err):
		w.log.Info("no cached configuration", "dir", w.cacheDir)
	default:
		w.log.Warn("ignoring the cached configuration", "err", err)
	}

	w.mu.Lock()
	w.syncLoopsLocked(w.cur.Load().cfg)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.poll(ctx)
	}()
	// A long poll from the cached epoch waits for a change: ask every
	// seed once without waiting, so that Heard tells soon whether the
	// cache is still what the coordinators serve.
	for _, addr := range w.seeds {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			w.askOnce(ctx, addr)
		}()
	}
	w.mu.Unlock()

	<-ctx.Done()
	w.mu.Lock()
	w.stopped = true
	for _, l := range w.loops {
		l.cancel()
	}
	w.mu.Unlock()
	w.wg.Wait()
	if w.ownClient {
		w.client.CloseIdleConnections()
	}
}

// syncLoopsLocked runs one long-poll loop for each coordinator of seeds and
// of cfg, and stops the loops of the coordinators that are in neither. w.mu
// must be held.
func (w *Watcher) syncLoopsLocked(cfg *config.Config) {
	if w.runCtx == nil || w.stopped {
		return
	}
	want := slices.Clone(w.seeds)
	if cfg != nil {
		for _, c := range cfg.Coordinators {
			if a, err := normalizeAddr(c.Addr()); err == nil && !slices.Contains(want, a) {
				want = append(want, a)
			}
		}
	}
	for a, l := range w.loops {
		if !slices.Contains(want, a) {
			l.cancel()
			delete(w.loops, a)
			w.log.Info("no longer asking a coordinator that the configuration does not name", "coordinator", a)
		}
	}
	for _, a := range want {
		if _, ok := w.loops[a]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(w.runCtx)
		l := &loop{addr: a, cancel: cancel}
		w.loops[a] = l
		if !slices.Contains(w.seeds, a) {
			w.log.Info("asking a coordinator that the configuration names", "coordinator", a)
		}
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			defer cancel()
			w.longPoll(ctx, l)
		}()
	}
}

// longPoll long-polls the coordinator of l until ctx is done, offering every
// newer configuration it answers.
func (w *Watcher) longPoll(ctx context.Context, l *loop) {
	var (
		bo   backoff
		down bool
	)
	for {
		since := max(w.cur.Load().epoch, l.rejected.Load())
		ans, err := fetch(ctx, w.client, w.scheme, l.addr, since, w.wait)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if !down {
				w.log.Warn("coordinator does not answer, retrying", "coordinator", l.addr, "err", err)
				down = true
			}
			if !bo.sleep(ctx) {
				return
			}
			continue
		}
		if down {
			w.log.Info("coordinator answers again", "coordinator", l.addr)
			down = false
		}
		bo.reset()
		if !ans.modified {
			w.markHeard()
			continue
		}
		if ans.epoch <= since {
			// The coordinator ignored since: pause rather than spin.
			if !bo.sleep(ctx) {
				return
			}
			continue
		}
		w.offer(l, ans)
		w.markHeard()
	}
}

// askOnce asks the coordinator at addr once, without waiting, and offers
// what it answers.
func (w *Watcher) askOnce(ctx context.Context, addr string) {
	since := w.cur.Load().epoch
	ans, err := fetch(ctx, w.client, w.scheme, addr, since, 0)
	if err != nil {
		return // the long poll retries and logs
	}
	if ans.modified && ans.epoch > since {
		w.offer(&loop{addr: addr}, ans)
	}
	w.markHeard()
}

// poll asks every coordinator with a plain request every pollEvery, until
// ctx is done.
func (w *Watcher) poll(ctx context.Context) {
	t := time.NewTicker(w.pollEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
		w.mu.Lock()
		loops := slices.Collect(maps.Values(w.loops))
		w.mu.Unlock()
		var wg sync.WaitGroup
		for _, l := range loops {
			wg.Go(func() {
				since := max(w.cur.Load().epoch, l.rejected.Load())
				ans, err := fetch(ctx, w.client, w.scheme, l.addr, since, 0)
				if err != nil {
					w.log.Debug("polling a coordinator", "coordinator", l.addr, "err", err)
					return
				}
				if ans.modified && ans.epoch > since {
					w.offer(l, ans)
				}
			})
		}
		wg.Wait()
	}
}

// offer adopts the configuration that the coordinator of l answered, if it
// is valid and its epoch the highest yet: it caches it, publishes it, and
// asks the coordinators it names.
func (w *Watcher) offer(l *loop, ans answer) {
	if ans.epoch <= w.cur.Load().epoch || ans.epoch <= l.rejected.Load() {
		return
	}
	cfg, err := config.Parse(ans.body)
	var body []byte
	if err == nil {
		body, _, err = canonical(cfg)
	}
	if err != nil {
		for {
			prev := l.rejected.Load()
			if ans.epoch <= prev {
				return // already logged
			}
			if l.rejected.CompareAndSwap(prev, ans.epoch) {
				break
			}
		}
		w.log.Error("invalid configuration from a coordinator, keeping the current one",
			"coordinator", l.addr, "epoch", ans.epoch, "err", err)
		return
	}
	w.adoptMu.Lock()
	defer w.adoptMu.Unlock()
	prev := w.cur.Load().epoch
	if ans.epoch <= prev {
		return
	}
	if err := writeCache(w.cacheDir, body, ans.epoch); err != nil {
		w.log.Error("could not cache the configuration; following it all the same", "err", err)
	}
	w.publishLocked(cfg, ans.epoch)
	w.log.Info("adopted a new configuration", "coordinator", l.addr, "epoch", ans.epoch, "previous_epoch", prev)
	w.mu.Lock()
	w.syncLoopsLocked(cfg)
	w.mu.Unlock()
}

// publishLocked makes cfg the current configuration and closes the Changed
// channel. w.adoptMu must be held.
func (w *Watcher) publishLocked(cfg *config.Config, epoch int64) {
	old := w.cur.Load()
	w.cur.Store(&view{cfg: cfg, epoch: epoch, changed: make(chan struct{})})
	close(old.changed)
}
