// Package localcluster runs every node of a configuration, and a proxy in
// front of them, as child processes on this machine: tako-cluster, for
// development and trials.
//
// When the configuration lists coordinators, they start first and the nodes
// and the proxy follow them (-c), as in a production deployment; otherwise
// every process reads the file (-cfg).
//
// With TLS on (Options.TLS, or a configuration with a tls section) every
// HTTP port serves HTTPS and the binary ports speak mutual TLS. Without a
// tls section of its own, the configuration runs with the certificates that
// Run makes in DIR/tls, once: a CA and one certificate for every process,
// naming localhost, 127.0.0.1, ::1 and the configuration's hosts (see
// TLSDirName). The nodes and the proxy verify the coordinators with the CA
// (-ca), and so does Run when it checks on the processes.
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
	"io/fs"
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

	"github.com/takodb/tako/internal/auth"
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
	// TLS runs the cluster with TLS on. When the configuration has no tls
	// section, Run makes a CA and a certificate in VarDir/tls (or reuses
	// those it made there before) and runs a copy of the configuration
	// with a tls section that names them (see TLSDirName). A configuration
	// with a tls section runs with TLS on whatever TLS says. False, the
	// zero value: TLS as the configuration says.
	TLS bool
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
	// With an auth section, every process needs an admin token: the
	// children inherit $TAKO_TOKEN, and Run reads /metrics with it.
	token := os.Getenv("TAKO_TOKEN")
	if err := cfg.Auth.Holds(token, auth.Admin); err != nil {
		return fmt.Errorf("%s has an auth section, so its processes need an admin token: set TAKO_TOKEN to one it lists (%w)", opts.ConfigPath, err)
	}
	logDir := filepath.Join(opts.VarDir, "log")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", logDir, err)
	}
	if err := checkPortsFree(cfg, opts.ProxyPort); err != nil {
		return err
	}
	configPath, scheme := opts.ConfigPath, "http://"
	var sec *tlsSetup // nil: plain HTTP and TCP
	if opts.TLS || cfg.TLS != nil {
		if sec, err = setUpTLS(opts.ConfigPath, cfg, opts.VarDir); err != nil {
			return err
		}
		configPath, cfg, scheme = sec.configPath, sec.cfg, "https://"
		if sec.dir != "" {
			opts.Logger.Info("TLS on: "+sec.made, "dir", sec.dir, "config", sec.configPath)
		} else {
			opts.Logger.Info("TLS on, with the files of the configuration's tls section", "ca", sec.caFile)
		}
	}
	hc := statusClient(sec, token)
	defer hc.CloseIdleConnections()
	var children []*child
	defer func() { stopAll(children, opts) }()
	// The coordinators first; the nodes and the proxy then get the
	// configuration from them (-c), as in a real deployment. A file with
	// no coordinators is given to every process directly (-cfg).
	source := []string{"-cfg", configPath}
	if len(cfg.Coordinators) > 0 {
		source = nil
		var coordinators []*child
		for _, co := range cfg.Coordinators {
			c := &child{id: co.ID, role: "coordinator", log: filepath.Join(logDir, co.ID+".log"), health: scheme + co.Addr() + "/health"}
			args := []string{ChildCoordinator, "-id", co.ID, "-cfg", configPath, "-v", opts.VarDir, "-l", c.log}
			if err := startChild(c, opts.Exe, args); err != nil {
				return err
			}
			children = append(children, c)
			coordinators = append(coordinators, c)
			source = append(source, "-c", co.Addr())
		}
		if sec != nil {
			// The coordinators serve HTTPS: the nodes and the proxy
			// fetch the configuration with the CA.
			source = append(source, "-ca", sec.caFile)
		}
		if err := waitUp(ctx, hc, cfg, coordinators); err != nil {
			return err
		}
		if err := dropCachedConfigs(opts.VarDir, cfg, opts.ProxyPort != 0); err != nil {
			return err
		}
	}
	for _, nd := range cfg.Nodes() {
		c := &child{id: nd.ID, role: "node " + nd.Bucket, log: filepath.Join(logDir, nd.ID+".log")}
		if nd.HTTPPort != 0 {
			c.health = scheme + nd.HTTPAddr() + "/health"
		}
		args := append([]string{ChildNode, "-id", nd.ID, "-v", opts.VarDir, "-l", c.log}, source...)
		if err := startChild(c, opts.Exe, args); err != nil {
			return err
		}
		children = append(children, c)
	}
	if opts.ProxyPort != 0 {
		c := &child{id: "p1", role: "proxy", log: filepath.Join(logDir, "p1.log"),
			health: fmt.Sprintf("%slocalhost:%d/health", scheme, opts.ProxyPort)}
		args := append([]string{ChildProxy, "-id", "p1", "-p", strconv.Itoa(opts.ProxyPort), "-b", "localhost", "-v", opts.VarDir, "-l", c.log}, source...)
		if err := startChild(c, opts.Exe, args); err != nil {
			return err
		}
		children = append(children, c)
	}
	opts.Logger.Info("started the cluster's processes; waiting for them to serve", "processes", len(children), "logs", logDir)
	if err := waitUp(ctx, hc, cfg, children); err != nil {
		return err
	}
	printTable(opts.Out, cfg, children, opts.ProxyPort, sec)
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
		watchStatus(statusCtx, hc, opts.Out, live, children, opts.StatusInterval)
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
	f, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
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

// cacheFile is the name of the configuration that a node's or a proxy's
// coordinator.Watcher caches in DIR/etc/ID (see WatcherOptions.CacheDir).
const cacheFile = "configuration.json"

// dropCachedConfigs removes the configurations that the nodes and the proxy
// cached in an earlier run. The coordinators serve by now, so the processes
// need no cache to start; and a process starts from its cache before it
// hears from them, so a cache from a run with TLS on, when TLS is now off
// (or the reverse), would start it with TLS settings that it changes only
// at a restart.
func dropCachedConfigs(varDir string, cfg *config.Config, proxy bool) error {
	var ids []string
	for _, nd := range cfg.Nodes() {
		ids = append(ids, nd.ID)
	}
	if proxy {
		ids = append(ids, "p1")
	}
	for _, id := range ids {
		p := filepath.Join(varDir, "etc", id, cacheFile)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing the configuration cached by an earlier run: %w", err)
		}
	}
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

// statusClient returns the client that checks on the processes: over HTTPS
// it verifies them with the cluster's CA.
func statusClient(sec *tlsSetup, token string) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if sec != nil {
		tr.TLSClientConfig = sec.client
	}
	return auth.WithToken(&http.Client{Transport: tr, Timeout: time.Second}, token)
}

// waitUp waits until every child serves, or one exits, or a minute passes.
func waitUp(ctx context.Context, hc *http.Client, cfg *config.Config, children []*child) error {
	deadline := time.Now().Add(time.Minute)
	bin := map[string]string{}
	for _, nd := range cfg.Nodes() {
		bin[nd.ID] = nd.BinaryAddr()
	}
	for _, c := range children {
		for {
			select {
			case <-c.done:
				return fmt.Errorf("%s exited while starting: %v; see %s", c.id, c.err, c.log)
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			err := up(hc, c, bin[c.id])
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s is not serving after a minute (%v); see %s", c.id, err, c.log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// up returns nil when c serves, or why it does not seem to.
func up(hc *http.Client, c *child, binaryAddr string) error {
	if c.health == "" {
		conn, err := net.DialTimeout("tcp", binaryAddr, time.Second)
		if err != nil {
			return err
		}
		conn.Close()
		return nil
	}
	resp, err := hc.Get(c.health)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", c.health, resp.Status)
	}
	return nil
}

// printTable prints what runs where and how to use it: with TLS on, the
// https URLs and the CA to verify them with.
func printTable(out io.Writer, cfg *config.Config, children []*child, proxyPort int, sec *tlsSetup) {
	scheme := ""
	if sec != nil {
		scheme = "https://"
	}
	tw := tabwriter.NewWriter(out, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tHTTP\tBINARY\tSTATE\tLOG")
	for _, c := range children {
		httpAddr, binAddr := "-", "-"
		if nd, _, ok := cfg.Node(c.id); ok {
			binAddr = nd.BinaryAddr()
			if nd.HTTPPort != 0 {
				httpAddr = scheme + nd.HTTPAddr()
			}
		} else if c.role == "coordinator" {
			for _, co := range cfg.Coordinators {
				if co.ID == c.id {
					httpAddr = scheme + co.Addr()
				}
			}
		} else if c.role == "proxy" {
			httpAddr = scheme + net.JoinHostPort("localhost", strconv.Itoa(proxyPort))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\tup\t%s\n", c.id, c.role, httpAddr, binAddr, c.log)
	}
	tw.Flush()
	if sec == nil {
		if proxyPort != 0 {
			fmt.Fprintf(out, "\nTako is up: try  curl%s -X POST --data-binary hello http://localhost:%d/values/greeting\nCtrl-C stops the cluster.\n", bearerHint(cfg), proxyPort)
		}
		return
	}
	printTLS(out, cfg, proxyPort, sec)
}

// bearerHint is what a curl command needs to be let in by a cluster with
// an auth section: the token tako-cluster was given (a user may prefer a
// write token of their own).
func bearerHint(cfg *config.Config) string {
	if cfg.Auth == nil {
		return ""
	}
	return ` -H "Authorization: Bearer $TAKO_TOKEN"`
}

// printTLS tells the user of a cluster with TLS on where the files are and
// how to reach it: over HTTPS only, verifying with the CA.
func printTLS(out io.Writer, cfg *config.Config, proxyPort int, sec *tlsSetup) {
	ca := sec.caFile
	fmt.Fprint(out, "\nTLS is on: every HTTP port above serves HTTPS only (plain HTTP gets 400), and the\nbinary ports speak mutual TLS. ")
	if sec.dir != "" {
		fmt.Fprintf(out, "tako-cluster %s in %s:\n", sec.made, sec.dir)
		for _, f := range [][2]string{
			{filepath.Base(ca), "the CA: HTTPS clients verify the cluster with it"},
			{"tako.pem, tako-key.pem", "the certificate and key of every process, signed by the CA"},
			{"ca-key.pem", "the CA's key, kept: the next run reuses the CA"},
			{filepath.Base(sec.configPath), "the configuration with its tls section, for Go clients"},
		} {
			fmt.Fprintf(out, "  %-23s %s\n", f[0], f[1])
		}
	} else {
		fmt.Fprintf(out, "The configuration's tls section names the files; its CA is\n%s.\n", ca)
	}
	base := ""
	if proxyPort != 0 {
		base = "https://" + net.JoinHostPort("localhost", strconv.Itoa(proxyPort))
	} else if nodes := cfg.Nodes(); len(nodes) > 0 && nodes[0].HTTPPort != 0 {
		base = "https://" + nodes[0].HTTPAddr()
	}
	fmt.Fprint(out, "\nTako is up: try\n")
	if base != "" {
		fmt.Fprintf(out, "  curl --cacert %s%s -X POST --data-binary hello %s/values/greeting\n", ca, bearerHint(cfg), base)
		fmt.Fprintf(out, "  curl --cacert %s%s %s/values/greeting\n", ca, bearerHint(cfg), base)
		fmt.Fprintf(out, "  tako -ca %s -s %s get greeting\n", ca, base)
	}
	if len(cfg.Coordinators) > 0 {
		fmt.Fprintf(out, "  tako -ca %s -s %s status\n", ca, cfg.Coordinators[0].Addr())
	}
	if base != "" {
		fmt.Fprintf(out, "  tako-bench -ca %s -url %s -op get -d 5s\n", ca, base)
	}
	fmt.Fprintf(out, "  tako-bench -cfg %s -op get -d 5s   (the Go client)\n", sec.configPath)
	fmt.Fprintf(out, "With TAKO_CA=%s in the environment, tako and tako-bench need no -ca.\nCtrl-C stops the cluster.\n", ca)
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
