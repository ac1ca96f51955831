// Package testcluster runs a whole Tako cluster inside one process, for
// tests and examples: one node.Node per node of a configuration, each with
// a real store in its own directory and real loopback ports, talking the
// binary protocol. Tests of whole programs use real processes instead
// (tests/e2e).
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/node"
	"github.com/takodb/tako/internal/tlsconf"
)

// Cluster is the running nodes of one configuration.
type Cluster struct {
	// Config is the configuration the nodes run.
	Config *config.Config
	// ConfigPath is the configuration written to a file.
	ConfigPath string
	// TLS are the certificate files of the tls section, made as tako
	// certs makes them, when Spec.TLS is set; zero otherwise.
	TLS tlsconf.Files

	dir     string
	logger  *slog.Logger
	nodes   map[string]*node.Node
	cancels map[string]context.CancelFunc
	done    map[string]chan error
	offsets map[string]time.Duration // clock offsets by node id

	// CoordinatorAddr is the address (HOST:PORT) of coordinator c1 in the
	// configuration, with Spec.Coordinator; empty without.
	CoordinatorAddr string
}

// Spec describes a cluster: Buckets lists each bucket's node ids.
type Spec struct {
	Buckets       [][]string
	BucketsPerKey int
	// Extra is added to the deployment's settings, indented by 4 spaces,
	// one "key: value" per line, for example "read_quorum: all".
	Extra []string
	// ClockOffsets runs the named nodes' clocks ahead of the system clock
	// (behind when negative), to test a node whose clock is wrong.
	ClockOffsets map[string]time.Duration
	// TLS makes a CA and a certificate in the cluster's directory, as
	// tako certs does, and gives the configuration a tls section that
	// names them: the nodes then talk mutual TLS on their binary ports.
	TLS bool
	// Coordinator gives the configuration a coordinators section that
	// names one coordinator, c1, on a free loopback port
	// (Cluster.CoordinatorAddr); package testcoordinator runs it.
	Coordinator bool
}

// Start writes a configuration of spec on free loopback ports into dir,
// starts every node, and returns once all of them listen. Stop the
// cluster with Close.
func Start(dir string, spec Spec, logger *slog.Logger) (*Cluster, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var b strings.Builder
	var files tlsconf.Files
	if spec.TLS {
		var err error
		if files, err = tlsconf.WriteFiles(filepath.Join(dir, "tls"), nil); err != nil {
			return nil, fmt.Errorf("testcluster: %w", err)
		}
		fmt.Fprintf(&b, "tls:\n  ca: %s\n  cert: %s\n  key: %s\n", files.CA, files.Cert, files.Key)
	}
	coordPort := 0
	if spec.Coordinator {
		ports, err := freePorts(1)
		if err != nil {
			return nil, err
		}
		coordPort = ports[0]
		fmt.Fprintf(&b, "coordinators:\n  c1: [127.0.0.1, %d]\n", coordPort)
	}
	fmt.Fprintf(&b, "active_deployment: test\ndeployments:\n  test:\n")
	for _, e := range spec.Extra {
		fmt.Fprintf(&b, "    %s\n", e)
	}
	fmt.Fprintf(&b, "    hash:\n      buckets_per_key: %d\n    buckets:\n", max(spec.BucketsPerKey, 1))
	for i, ids := range spec.Buckets {
		fmt.Fprintf(&b, "      b%d:\n", i+1)
		for _, id := range ids {
			ports, err := freePorts(2)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "        %s: [127.0.0.1, %d, %d]\n", id, ports[0], ports[1])
		}
	}
	path := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Config: cfg, ConfigPath: path, TLS: files, dir: dir, logger: logger, offsets: spec.ClockOffsets,
		nodes: map[string]*node.Node{}, cancels: map[string]context.CancelFunc{}, done: map[string]chan error{}}
	if coordPort != 0 {
		c.CoordinatorAddr = fmt.Sprintf("127.0.0.1:%d", coordPort)
	}
	for _, nd := range cfg.Nodes() {
		if err := c.StartNode(nd.ID); err != nil {
			c.Close()
			return nil, err
		}
	}
	// New nodes start with empty stores, so they recover first (a quick
	// repair pass with their peers); until then a missing key would not
	// read as "not found".
	for deadline := time.Now().Add(30 * time.Second); c.anyRecovering(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.Close()
			return nil, fmt.Errorf("testcluster: nodes still recovering after 30 s")
		}
	}
	return c, nil
}

// handedOut remembers every port freePorts returned, so that it never
// returns one twice: the kernel may offer a closed listener's port again
// before the node it was meant for has bound it.
var (
	handedOutMu sync.Mutex
	handedOut   = map[int]bool{}
)

func freePorts(n int) ([]int, error) {
	handedOutMu.Lock()
	defer handedOutMu.Unlock()
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		port := ln.Addr().(*net.TCPAddr).Port
		if !handedOut[port] {
			handedOut[port] = true
			ports = append(ports, port)
		}
	}
	return ports, nil
}

// StartNode starts (or restarts) the node id with its data directory.
func (c *Cluster) StartNode(id string) error {
	if c.nodes[id] != nil {
		return fmt.Errorf("testcluster: node %s is running", id)
	}
	opts := node.Options{ID: id, Config: c.Config, DataDir: filepath.Join(c.dir, "data", id), Logger: c.logger.With("node", id)}
	if offset := c.offsets[id]; offset != 0 {
		opts.Wall = func() time.Time { return time.Now().Add(offset) }
	}
	n, err := node.New(opts)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); n.BinaryAddr() == nil; time.Sleep(2 * time.Millisecond) {
		select {
		case err := <-done:
			cancel()
			return fmt.Errorf("testcluster: node %s: %w", id, err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			return fmt.Errorf("testcluster: node %s did not bind its ports in 10 s", id)
		}
	}
	c.nodes[id], c.cancels[id], c.done[id] = n, cancel, done
	return nil
}

func (c *Cluster) anyRecovering() bool {
	for _, n := range c.nodes {
		if n.Recovering() {
			return true
		}
	}
	return false
}

// StopNode stops the node id cleanly; its data stays.
func (c *Cluster) StopNode(id string) error {
	if c.nodes[id] == nil {
		return nil
	}
	c.cancels[id]()
	err := <-c.done[id]
	delete(c.nodes, id)
	return err
}

// Node returns the running node id, or nil.
func (c *Cluster) Node(id string) *node.Node { return c.nodes[id] }

// HTTPURL returns the base URL of the node id's HTTP port: https when the
// cluster has a tls section (Spec.TLS).
func (c *Cluster) HTTPURL(id string) string {
	nd, _, _ := c.Config.Node(id)
	if c.Config.TLS != nil {
		return "https://" + nd.HTTPAddr()
	}
	return "http://" + nd.HTTPAddr()
}

// Close stops every node.
func (c *Cluster) Close() error {
	var first error
	for id := range c.nodes {
		if err := c.StopNode(id); err != nil && first == nil {
			first = err
		}
	}
	return first
}
