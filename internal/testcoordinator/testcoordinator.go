// Package testcoordinator runs the coordinator of a testcluster.Cluster in
// the process, for tests and examples of what follows a coordinator (the
// Go client's Dial). It is apart from testcluster so that the coordinator's
// own tests can use testcluster.
package testcoordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/takodb/tako/internal/coordinator"
	"github.com/takodb/tako/internal/testcluster"
)

// Coordinator is coordinator c1 of a cluster, serving its configuration
// file.
type Coordinator struct {
	// Addr is where it listens (HOST:PORT).
	Addr string

	path string
	srv  *coordinator.Server
	stop func()
}

// Start runs coordinator c1 of cluster (started with Spec.Coordinator) on
// its configuration file, with its state in dir, and returns once it
// listens. Stop it with Close.
func Start(cluster *testcluster.Cluster, dir string, logger *slog.Logger) (*Coordinator, error) {
	if cluster.CoordinatorAddr == "" {
		return nil, errors.New("testcoordinator: the cluster's configuration names no coordinator (testcluster.Spec.Coordinator)")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	srv, err := coordinator.NewServer(coordinator.ServerOptions{ID: "c1", ConfigPath: cluster.ConfigPath,
		StateDir: filepath.Join(dir, "coordinator"), Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("testcoordinator: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	c := &Coordinator{Addr: srv.Addr(), path: cluster.ConfigPath, srv: srv, stop: func() { cancel(); <-done }}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if conn, err := net.Dial("tcp", c.Addr); err == nil {
			conn.Close()
			return c, nil
		}
		select {
		case err := <-done:
			cancel()
			return nil, fmt.Errorf("testcoordinator: the coordinator stopped: %w", err)
		default:
		}
		if time.Now().After(deadline) {
			c.stop()
			return nil, fmt.Errorf("testcoordinator: the coordinator did not listen on %s in 10 s", c.Addr)
		}
	}
}

// Reload writes content (a configuration, YAML) over the configuration
// file and makes the coordinator serve it. The in-process nodes keep
// theirs: tests change what only clients and proxies follow.
func (c *Coordinator) Reload(content string) error {
	if err := os.WriteFile(c.path, []byte(content), 0o644); err != nil {
		return err
	}
	return c.srv.Reload()
}

// Close stops the coordinator.
func (c *Coordinator) Close() { c.stop() }
