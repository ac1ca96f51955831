package programs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/takodb/tako/internal/cli"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coordinator"
)

// checkSourceFlags exits with a clear line unless exactly one of -c and
// -cfg is given and the poll interval is positive.
func checkSourceFlags(program string, coordinators []string, file string, poll int) {
	switch {
	case len(coordinators) > 0 && file != "":
		cli.Exit(program, 2, errors.New("give either -c (follow coordinators) or -cfg (read a file), not both"))
	case len(coordinators) == 0 && file == "":
		cli.Exit(program, 2, fmt.Errorf("-c HOST:PORT or -cfg FILE is required (see %s -h)", program))
	case poll <= 0:
		cli.Exit(program, 2, errors.New("-u: the poll interval must be a positive number of seconds"))
	}
}

// source gives a node or proxy its configuration: read once from a file
// (-cfg), or followed from the coordinators (-c).
type source struct {
	cfg     *config.Config
	epoch   int64
	watcher *coordinator.Watcher // nil for a file
	done    sync.WaitGroup
}

// sourceOptions say where the configuration comes from.
type sourceOptions struct {
	file         string
	coordinators []string
	token        string      // for the coordinators, when auth is on
	tls          *tls.Config // verifies the coordinators over HTTPS; nil: plain HTTP
	cacheDir     string
	poll         time.Duration
	logger       *slog.Logger
	// accept says whether a configuration is one the process can start
	// with; want says what it waits for (logged), refused why a file's
	// configuration is not acceptable (the error).
	accept  func(*config.Config) bool
	want    string
	refused string
}

// openSource returns the first acceptable configuration. With coordinators
// it starts a watcher, owned by ctx and waited for by source.wait, and
// blocks until a configuration is acceptable or ctx ends.
func openSource(ctx context.Context, o sourceOptions) (*source, error) {
	if o.file != "" {
		cfg, err := config.Load(o.file)
		if err != nil {
			return nil, err
		}
		if !o.accept(cfg) {
			return nil, fmt.Errorf("%s: %s", o.file, o.refused)
		}
		return &source{cfg: cfg}, nil
	}
	w, err := coordinator.NewWatcher(coordinator.WatcherOptions{
		Coordinators: o.coordinators,
		CacheDir:     o.cacheDir,
		PollInterval: o.poll,
		Logger:       o.logger,
		Token:        o.token,
		TLS:          o.tls,
	})
	if err != nil {
		return nil, err
	}
	s := &source{watcher: w}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		w.Run(ctx)
	}()
	o.logger.Info("waiting for a configuration from the coordinators", "coordinators", o.coordinators, "cache", o.cacheDir, "waiting_for", o.want)
	// The cached configuration may be older than what the coordinators
	// serve now (the process was stopped across a change): a node that
	// served under it could answer for ranges that were taken from it
	// meanwhile. Give the coordinators a moment to answer first.
	select {
	case <-w.Heard():
	case <-time.After(heardWait):
		o.logger.Warn("no coordinator answered yet: starting from the cached configuration, if it names this process, and following the coordinators once they answer",
			"coordinators", o.coordinators, "waited", heardWait)
	case <-ctx.Done():
	}
	s.cfg, s.epoch, err = w.WaitFor(ctx, o.accept)
	if err != nil {
		s.done.Wait()
		return nil, err
	}
	return s, nil
}

// heardWait is how long a process waits for a coordinator's answer before
// it starts from its cached configuration.
const heardWait = 3 * time.Second

// follow calls apply with every newer configuration until ctx ends; it
// does nothing for a file.
func (s *source) follow(ctx context.Context, apply func(*config.Config, int64)) {
	if s.watcher == nil {
		return
	}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		last := s.epoch
		for {
			changed := s.watcher.Changed()
			if cfg, epoch := s.watcher.Current(); epoch > last {
				last = epoch
				apply(cfg, epoch)
			}
			select {
			case <-ctx.Done():
				return
			case <-changed:
			}
		}
	}()
}

// wait waits for the source's goroutines, which end with ctx.
func (s *source) wait() { s.done.Wait() }
