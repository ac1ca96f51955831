package coordinator_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coordinator"
)

// A tako-coordinator: serve the file, reload it on SIGHUP.
func ExampleServer() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	logger := slog.Default()
	s, err := coordinator.NewServer(coordinator.ServerOptions{
		ID:         "c1",
		ConfigPath: "tako.yaml",
		StateDir:   filepath.Join("var/tako", "coordinator", "c1"),
		Logger:     logger,
	})
	if err != nil {
		logger.Error("starting", "err", err)
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				_ = s.Reload() // an invalid file is logged and changes nothing
			case <-ctx.Done():
				return
			}
		}
	}()
	if err := s.Run(ctx); err != nil {
		logger.Error("serving", "err", err)
	}
}

// A node started with -c: wait for a configuration that names it, then
// follow every newer one.
func ExampleWatcher() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	w, err := coordinator.NewWatcher(coordinator.WatcherOptions{
		Coordinators: []string{"tako-coordinator-1:4712", "tako-coordinator-2:4712"},
		CacheDir:     filepath.Join("var/tako", "etc"),
	})
	if err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx)
	}()
	defer func() { <-done }()

	names := func(c *config.Config) bool { _, _, ok := c.Node("n1"); return ok }
	cfg, epoch, err := w.WaitFor(ctx, names)
	if err != nil {
		return // stopped while waiting
	}
	_ = cfg // start serving with cfg and epoch
	for {
		changed := w.Changed()
		if c, e := w.Current(); e > epoch {
			cfg, epoch = c, e // switch to the new configuration
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}
