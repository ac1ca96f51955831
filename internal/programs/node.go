// Package programs holds the command lines of Tako's programs: each
// function parses a program's flags, builds its options, runs it until
// SIGTERM or SIGINT, and exits the process. The mains under cmd/ call one
// each; tako-cluster calls them in the child processes it starts, so that
// one binary can run a whole cluster.
package programs

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/takodb/tako/internal/cli"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/node"
	"github.com/takodb/tako/internal/private"
)

// Node is the tako-node program: it runs one node with the given arguments
// (without the program name) and exits the process.
func Node(args []string) {
	const program = "tako-node"
	private.Umask() // before anything is written: the store, the cache, the log
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	id := fs.String("id", "", "the node's id in the configuration (required)")
	cfgFile := fs.String("cfg", "", "configuration `FILE`, for use without a coordinator")
	var coordinators cli.Addrs
	fs.Var(&coordinators, "c", "a coordinator's `HOST:PORT`, repeatable: follow the configuration it serves")
	varDir := fs.String("v", "var/tako", "var `DIR`ectory: configuration cache (DIR/etc/ID) and data, private to this user")
	storePath := fs.String("f", "", "store location `PATH` (default DIR/data/ID)")
	poll := fs.Int("u", 300, "configuration poll interval in `SECONDS`, a fallback to the long-poll (with -c)")
	var logs cli.LogFlags
	logs.Register(fs)
	readToken := cli.TokenFlag(fs, "`FILE` holding the admin token, when the cluster has an auth section: to fetch the configuration, and to present to the other nodes' binary ports")
	readCA := cli.CAFlag(fs, "CA certificate `FILE` to verify the coordinators with: with it, -c asks them over HTTPS (for a cluster with a tls section)")
	recoverAll := fs.Bool("recover", false, "the store lost part of its data (a file removed, a restore from an older copy, damage found by a checksum): refill all of the node's ranges from the other replicas, reading its keys through from them meanwhile; an empty store does this by itself (docs/operations.md)")
	minFree := fs.String("min-free", "128MiB", "free disk `SIZE` the store keeps for its flushes and compactions: writes that would leave less are refused (507) while reads go on, until space is freed")
	clockOffset := fs.Duration("test-clock-offset", 0, "for fault tests only: run the node's clock `DURATION` ahead of the system clock (negative: behind)")
	cli.Usage(fs, "tako-node -id ID (-c HOST:PORT ... | -cfg FILE) [-v DIR] [-f PATH] [-u SECONDS] [-recover] [-min-free SIZE] [-d] [-l FILE] [-json]", `
Runs one Tako node. The node stores its share of the data in an embedded
Pebble store, talks to the other nodes over the binary protocol on its binary
port, and serves the HTTP API for the whole cluster on its HTTP port:
GET/POST/PUT/DELETE /values/KEY, GET /stat/KEY, GET /where/KEY, /health and
/metrics. Every write is synced to disk before it is acknowledged.

With -c the node follows the configuration its coordinators serve: it waits
for one that names it (starting from its cache in DIR/etc/ID when no
coordinator answers) and adopts every newer one while it runs. With -cfg it
reads the file once.

A node whose store is empty (a new node, or a lost disk) recovers by itself:
it refills its ranges by streaming them from the other replicas, and reads
the keys it lacks through from them before it answers, so no read fails for
its sake. A store that lost only part of its data looks whole: start the
node with -recover once to refill all of it (the refill resumes where it was
after a restart, with or without the flag). Progress: /metrics
(tako_refill_*), tako status, and a log line every 10 s.

The node keeps -min-free of its disk free: a write that would eat into it
is refused with 507 Insufficient Storage, reads go on, and writes are
accepted again by themselves once space is freed. A disk error the store
cannot survive (a failed write or sync of its write-ahead log) stops the
node with one line and exit status 3: no write it could not sync was
acknowledged, and a restart replays what was synced. A store whose files
fail their checksums does not start: exit status 4, and one line naming
the file and what to do (docs/operations.md).

When the configuration has a tls section, the binary port speaks mutual TLS
with the certificates it names (tako certs makes them), the HTTP port serves
HTTPS with the same certificate, and SIGHUP reads the certificate and key
files again without dropping connections. Give -ca to fetch the configuration
from coordinators that serve HTTPS.

When the configuration has an auth section, both ports serve only requests
whose token it lists with the role they need, and the node needs an admin
token itself (-token-file or $TAKO_TOKEN): it fetches the configuration with
it and presents it to the other nodes. It refuses to start without one.

What the node writes is readable by its own user only: it runs with umask
0077, and at start it takes group and other permissions away from DIR,
DIR/etc and DIR/data, and from every directory and file under its store and
DIR/etc/ID (directories 0700, files 0600), as older versions left them.

Examples:
  tako-node -id n1 -c tako-coordinator-1.domain.com:4712
  tako-node -id n1 -cfg examples/standalone.yaml     # HTTP on localhost:5711`)
	cli.Parse(fs, args)

	switch {
	case *id == "":
		cli.Exit(program, 2, errors.New("-id is required (see tako-node -h)"))
	}
	minFreeBytes, err := config.ParseSize(*minFree)
	if err != nil {
		cli.Exit(program, 2, fmt.Errorf("-min-free: %w", err))
	}
	checkSourceFlags(program, coordinators, *cfgFile, *poll)
	logger, closeLog, err := logs.Logger(program)
	if err != nil {
		cli.Exit(program, 1, err)
	}
	defer closeLog.Close()
	dataDir := *storePath
	if dataDir == "" {
		dataDir = filepath.Join(*varDir, "data", *id)
	}
	cacheDir := filepath.Join(*varDir, "etc", *id)
	tightenFiles(logger, []string{*varDir, filepath.Join(*varDir, "etc"), filepath.Join(*varDir, "data")}, cacheDir, dataDir)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ignoreHUPUntilReload()
	token, err := readToken()
	if err != nil {
		cli.Exit(program, 1, err)
	}
	caTLS, err := readCA()
	if err != nil {
		cli.Exit(program, 1, err)
	}
	src, err := openSource(ctx, sourceOptions{
		token: token, tls: caTLS,
		file: *cfgFile, coordinators: coordinators, cacheDir: cacheDir,
		poll: time.Duration(*poll) * time.Second, logger: logger,
		accept:  func(c *config.Config) bool { _, _, ok := c.Node(*id); return ok },
		want:    "a configuration that names node " + *id,
		refused: "node " + *id + " is not in the configuration: use the id of a node listed under one of its buckets",
	})
	if err != nil {
		if ctx.Err() != nil {
			os.Exit(0) // stopped while waiting
		}
		cli.Exit(program, 1, err)
	}
	opts := node.Options{ID: *id, Config: src.cfg, Epoch: src.epoch, DataDir: dataDir, Logger: logger, Token: token, Recover: *recoverAll,
		MinFreeBytes: minFreeBytes}
	if offset := *clockOffset; offset != 0 {
		// A wrong clock on purpose, to test that the cluster keeps every
		// acknowledged write in order when one node's clock is wrong.
		logger.Warn("running with a wrong clock on purpose (-test-clock-offset): for fault tests only", "offset", offset)
		opts.Wall = func() time.Time { return time.Now().Add(offset) }
	}
	n, err := node.New(opts)
	if err != nil {
		cli.Exit(program, nodeExitCode(err), err)
	}
	logger.Info("starting", "node", *id, "cfg", *cfgFile, "coordinators", coordinators.String(), "epoch", src.epoch, "data", dataDir)
	src.follow(ctx, n.SetConfig)
	stopReload := func() {}
	if src.cfg.TLS != nil {
		stopReload = reloadTLSOnHUP(ctx, logger, n.ReloadTLS)
	}
	stopProfile := startProfile(program, *id, logger)
	err = n.Run(ctx)
	stopProfile()
	stopReload()
	stop()
	src.wait()
	if errors.Is(err, node.ErrRestart) {
		n.Close()
		restartInPlace(program, logger)
	}
	if err != nil {
		cli.Exit(program, nodeExitCode(err), err)
	}
	os.Exit(0)
}

// restartInPlace replaces the process with a new run of the same program
// and arguments (same process id, so a service manager sees no exit): a
// node whose store opened read-only on a full disk does this once space is
// back, to open it for writes.
func restartInPlace(program string, logger *slog.Logger) {
	self, err := os.Executable()
	if err == nil {
		logger.Info("restarting in place", "program", self)
		err = syscall.Exec(self, os.Args, os.Environ())
	}
	cli.Exit(program, 1, fmt.Errorf("restarting to take writes again: %w; start it again by hand", err))
}

// Exit statuses of tako-node beyond 0 (stopped cleanly), 1 (an error: bad
// configuration, a port taken, ...) and 2 (bad usage). Service managers can
// tell them apart: a restart after exitStoreFailed is safe (the store
// replays its log) but fails again while the disk does; one after
// exitStoreDamaged is useless until the operator acts (systemd:
// RestartPreventExitStatus=4).
const (
	// exitStoreFailed: the store met a disk error it cannot go on from (a
	// failed write or sync of its write-ahead log) and the node stopped.
	exitStoreFailed = 3
	// exitStoreDamaged: a file of the store failed its checksum; the node
	// did not start.
	exitStoreDamaged = 4
)

// nodeExitCode is the exit status for the error that ended a node.
func nodeExitCode(err error) int {
	switch {
	case errors.Is(err, node.ErrStoreDamaged):
		return exitStoreDamaged
	case errors.Is(err, node.ErrStoreFailed):
		return exitStoreFailed
	}
	return 1
}
