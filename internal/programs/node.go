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
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/takodb/tako/internal/cli"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/node"
)

// Node is the tako-node program: it runs one node with the given arguments
// (without the program name) and exits the process.
func Node(args []string) {
	const program = "tako-node"
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	id := fs.String("id", "", "the node's id in the configuration (required)")
	cfgFile := fs.String("cfg", "", "configuration `FILE`, for use without a coordinator")
	var coordinators cli.Addrs
	fs.Var(&coordinators, "c", "a coordinator's `HOST:PORT`, repeatable (not available yet: use -cfg)")
	varDir := fs.String("v", "var/tako", "var `DIR`ectory: configuration cache and data")
	storePath := fs.String("f", "", "store location `PATH` (default DIR/data/ID)")
	fs.Int("u", 300, "configuration poll interval in `SECONDS` (with -c)")
	debug := fs.Bool("d", false, "debug logging")
	logFile := fs.String("l", "", "append logs to `FILE` instead of stderr")
	cli.Usage(fs, "tako-node -id ID -cfg FILE [-v DIR] [-f PATH] [-d] [-l FILE]", `
Runs one Tako node. The node stores its share of the data in an embedded
Pebble store and serves the HTTP API on the HTTP port the configuration gives
it: GET/POST/PUT/DELETE /values/KEY, GET /stat/KEY, /health and /metrics.
Every write is synced to disk before it is acknowledged.

Example, the seed's standalone node (HTTP on localhost:5711):
  tako-node -id n1 -cfg examples/standalone.yaml
  curl -X POST --data-binary hello localhost:5711/values/greeting`)
	cli.Parse(fs, args)

	switch {
	case *id == "":
		cli.Exit(program, 2, errors.New("-id is required (see tako-node -h)"))
	case len(coordinators) > 0 && *cfgFile == "":
		cli.Exit(program, 2, errors.New("-c: fetching the configuration from a coordinator is not available in this version; start the node with -cfg FILE"))
	case *cfgFile == "":
		cli.Exit(program, 2, errors.New("-cfg FILE is required (see tako-node -h)"))
	}
	cfg, err := config.Load(*cfgFile)
	if err != nil {
		cli.Exit(program, 1, err)
	}
	if _, _, ok := cfg.Node(*id); !ok {
		cli.Exit(program, 1, errors.New("node "+*id+" is not in "+*cfgFile+": use the id of a node listed under one of its buckets"))
	}
	logger, closeLog, err := cli.Logger(program, *debug, *logFile)
	if err != nil {
		cli.Exit(program, 1, err)
	}
	defer closeLog.Close()
	dataDir := *storePath
	if dataDir == "" {
		dataDir = filepath.Join(*varDir, "data", *id)
	}
	n, err := node.New(node.Options{ID: *id, Config: cfg, DataDir: dataDir, Logger: logger})
	if err != nil {
		cli.Exit(program, 1, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger.Info("starting", "node", *id, "cfg", *cfgFile, "data", dataDir)
	if err := n.Run(ctx); err != nil {
		cli.Exit(program, 1, err)
	}
	os.Exit(0)
}
