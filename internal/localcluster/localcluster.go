// Package localcluster runs every node of a configuration, and a proxy in
// front of them, as child processes on this machine: tako-cluster, for
// development and trials.
//
// When the configuration lists coordinators, they start first and the nodes
// and the proxy follow them (-c), as in a production deployment; otherwise
// every process reads the file (-cfg).
//
// The children are the running binary itself, re-executed in a child mode
// (see ChildArgs), so that one binary, even one built by `go run`, runs the
// whole cluster. Each child logs to DIR/log/ID.log and keeps its data under
// DIR/data/ID. Run reports when every child is up, reports a child that
// exits, and on cancellation stops them all with SIGTERM (SIGKILL after a
// grace period).
package localcluster

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/takodb/tako/internal/config"
)

// DefaultConfig is the built-in local cluster: ten nodes on 127.0.0.1 in
// five buckets of two, every key on two buckets. It is the same file as
// examples/local_cluster.yaml.
//
//go:embed local_cluster.yaml
var DefaultConfig []byte

// The first argument that puts the binary in a child mode.
const (
	ChildNode        = "-child-node"
	ChildProxy       = "-child-proxy"
	ChildCoordinator = "-child-coordinator"
)

// Options configure Run.
type Options struct {
	// ConfigPath is the configuration file. Required.
	ConfigPath string
	// ProxyPort is the proxy's HTTP port; 0 runs no proxy.
	ProxyPort int
	// VarDir holds the children's data and logs. Required.
	VarDir string
	// Exe is the binary to run the children with, in child mode. Required.
	Exe string
	// Out receives the status table. If nil, os.Stdout.
	Out io.Writer
	// Logger receives what happens to the children. If nil, discards.
	Logger *slog.Logger
	// StopGrace is how long children get to exit after SIGTERM before
	// SIGKILL. Zero means 15 s.
	StopGrace time.Duration
	// StatusInterval is how often the live status is refreshed. Zero
	// means 2 s.
	StatusInterval time.Duration
}

type child struct {
	id, role, health, log string
	cmd                   *exec.Cmd
	done                  chan struct{}
	err                   error // valid once done is closed
}

// Run starts the children and waits for ctx to end, then stops them. It
// fails if a child cannot be started or the cluster does not come up
// within a minute; it stops the children it started in every case.
func Run(ctx context.Context, opts Options) error {
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StopGrace == 0 {
		opts.StopGrace = 15 * time.Second
	}
	if opts.StatusInterval == 0 {
		opts.StatusInterval = 2 * time.Second
	}
	cfg, err := config.Load(opts.ConfigPath)
	if err != nil {
		return err
	}
	logDir := filepath.Join(opts.VarDir, "log")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", logDir, err)
	}
	if err := checkPortsFree(cfg, opts.ProxyPort); err != nil {
		return err
	}
	var children []*child
	defer func() { stopAll(children, opts) }()
	// The coordinators first; the nodes and the proxy then get the
	// configuration from them (-c), as in a real deployment. A file with
	// no coordinators is given to every process directly (-cfg).
	source := []string{"-cfg", opts.ConfigPath}
	if len(cfg.Coordinators) > 0 {
		source = nil
		var coordinators []*child
		for _, co := range cfg.Coordinators {
			c := &child{id: co.ID, role: "coordinator", log: filepath.Join(logDir, co.ID+".log"), health: "http://" + co.Addr() + "/health"}
			args := []string{ChildCoordinator, "-id", co.ID, "-cfg", opts.ConfigPath, "-v", opts.VarDir, "-l", c.log}
			if err := startChild(c, opts.Exe, args); err != nil {
				return err
			}
			children = append(children, c)
			coordinators = append(coordinators, c)
			source = append(source, "-c", co.Addr())
		}
		if err := waitUp(ctx, cfg, coordinators); err != nil {
			return err
		}
	}
	for _, nd := range cfg.Nodes() {
		c := &child{id: nd.ID, role: "node " + nd.Bucket, log: filepath.Join(logDir, nd.ID+".log")}
		if nd.HTTPPort != 0 {
			c.health = "http://" + nd.HTTPAddr() + "/health"
		}
		args := append([]string{ChildNode, "-id", nd.ID, "-v", opts.VarDir, "-l", c.log}, source...)
		if err := startChild(c, opts.Exe, args); err != nil {
			return err
		}
		children = append(children, c)
	}
	if opts.ProxyPort != 0 {
		c := &child{id: "p1", role: "proxy", log: filepath.Join(logDir, "p1.log"),
			health: fmt.Sprintf("http://localhost:%d/health", opts.ProxyPort)}
		args := append([]string{ChildProxy, "-id", "p1", "-p", strconv.Itoa(opts.ProxyPort), "-b", "localhost", "-v", opts.VarDir, "-l", c.log}, source...)
		if err := startChild(c, opts.Exe, args); err != nil {
			return err
		}
		children = append(children, c)
	}
	opts.Logger.Info("started the cluster's processes; waiting for them to serve", "processes", len(children), "logs", logDir)
	if err := waitUp(ctx, cfg, children); err != nil {
		return err
	}
	printTable(opts.Out, cfg, children, opts.ProxyPort)
	live := isTerminal(opts.Out)
	if live {
		fmt.Fprintf(opts.Out, "Logs: %s\n\n", logDir)
	} else {
		fmt.Fprintf(opts.Out, "Logs: %s; a line below whenever a process goes down or comes back.\n", logDir)
	}
	statusCtx, stopStatus := context.WithCancel(ctx)
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		watchStatus(statusCtx, opts.Out, live, children, opts.StatusInterval)
	}()
	defer func() { stopStatus(); <-statusDone }()
	exited := make(chan *child, len(children))
	for _, c := range children {
		go func() { <-c.done; exited <- c }()
	}
	for {
		select {
		case <-ctx.Done():
			opts.Logger.Info("stopping the cluster")
			return nil
		case c := <-exited:
			opts.Logger.Warn("a process of the cluster exited; the others keep running", "id", c.id, "role", c.role, "err", c.err, "log", c.log)
		}
	}
}

// ChildArgs returns the arguments that make the binary run a node (or a
// proxy), for a main that dispatches on them: ok is false when args are not
// a child's.
func ChildArgs(args []string) (role string, rest []string, ok bool) {
	if len(args) > 0 && (args[0] == ChildNode || args[0] == ChildProxy || args[0] == ChildCoordinator) {
		return args[0], args[1:], true
	}
	return "", nil, false
}

func startChild(c *child, exe string, args []string) error {
	c.cmd = exec.Command(exe, args...)
	f, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening the log of %s: %w", c.id, err)
	}
	defer f.Close()
	// The child logs into the file itself (-l); stdout and stderr catch
	// whatever it prints before that, such as a bad flag.
	c.cmd.Stdout, c.cmd.Stderr = f, f
	// Children die with the cluster even if it is killed with SIGKILL.
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := c.cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", c.id, err)
	}
	c.done = make(chan struct{})
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	return nil
}

// checkPortsFree fails, naming the port and its owner in the configuration,
// when a port the cluster needs is taken already.
func checkPortsFree(cfg *config.Config, proxyPort int) error {
	type want struct{ addr, who string }
	var wants []want
	for _, co := range cfg.Coordinators {
		wants = append(wants, want{co.Addr(), "coordinator " + co.ID})
	}
	for _, nd := range cfg.Nodes() {
		wants = append(wants, want{nd.BinaryAddr(), nd.ID + " (binary)"})
		if nd.HTTPPort != 0 {
			wants = append(wants, want{nd.HTTPAddr(), nd.ID + " (HTTP)"})
		}
	}
	if proxyPort != 0 {
		wants = append(wants, want{net.JoinHostPort("localhost", strconv.Itoa(proxyPort)), "the proxy"})
	}
	for _, w := range wants {
		ln, err := net.Listen("tcp", w.addr)
		if err != nil {
			return fmt.Errorf("port for %s: %w (is another cluster running?)", w.who, err)
		}
		ln.Close()
	}
	return nil
}

// waitUp waits until every child serves, or one exits, or a minute passes.
func waitUp(ctx context.Context, cfg *config.Config, children []*child) error {
	deadline := time.Now().Add(time.Minute)
	bin := map[string]string{}
	for _, nd := range cfg.Nodes() {
		bin[nd.ID] = nd.BinaryAddr()
	}
	hc := &http.Client{Timeout: time.Second}
	for _, c := range children {
		for {
			select {
			case <-c.done:
				return fmt.Errorf("%s exited while starting: %v; see %s", c.id, c.err, c.log)
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			if up(hc, c, bin[c.id]) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s is not serving after a minute; see %s", c.id, c.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

func up(hc *http.Client, c *child, binaryAddr string) bool {
	if c.health == "" {
		conn, err := net.DialTimeout("tcp", binaryAddr, time.Second)
		if err != nil {
			return false
		}
		conn.Close()
		return true
	}
	resp, err := hc.Get(c.health)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func printTable(out io.Writer, cfg *config.Config, children []*child, proxyPort int) {
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tHTTP\tBINARY\tSTATE\tLOG")
	for _, c := range children {
		httpAddr, binAddr := "-", "-"
		if nd, _, ok := cfg.Node(c.id); ok {
			binAddr = nd.BinaryAddr()
			if nd.HTTPPort != 0 {
				httpAddr = nd.HTTPAddr()
			}
		} else if c.role == "coordinator" {
			for _, co := range cfg.Coordinators {
				if co.ID == c.id {
					httpAddr = co.Addr()
				}
			}
		} else if c.role == "proxy" {
			httpAddr = net.JoinHostPort("localhost", strconv.Itoa(proxyPort))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tup\t%s\n", c.id, c.role, httpAddr, binAddr, c.log)
	}
	tw.Flush()
	if proxyPort != 0 {
		fmt.Fprintf(out, "\nTako is up: try  curl -X POST --data-binary hello http://localhost:%d/values/greeting\nCtrl-C stops the cluster.\n", proxyPort)
	}
}

// stopAll sends SIGTERM to every child still running, waits for them up to
// the grace period, then kills the rest.
func stopAll(children []*child, opts Options) {
	for _, c := range children {
		c.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := make(chan struct{})
	timer := time.AfterFunc(opts.StopGrace, func() { close(deadline) })
	defer timer.Stop()
	var wg sync.WaitGroup
	for _, c := range children {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-c.done:
			case <-deadline:
				opts.Logger.Warn("process did not stop in time; killing it", "id", c.id)
				c.cmd.Process.Kill()
				<-c.done
			}
			var exit *exec.ExitError
			if c.err != nil && !errors.As(c.err, &exit) {
				opts.Logger.Warn("process ended with an error", "id", c.id, "err", c.err)
			} else if c.err != nil {
				opts.Logger.Warn("process exited non-zero", "id", c.id, "code", exit.ExitCode(), "log", c.log)
			}
		}()
	}
	wg.Wait()
}
