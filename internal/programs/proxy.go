package programs

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/takodb/tako/internal/cli"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/private"
	"github.com/takodb/tako/internal/proxy"
)

// Proxy is the tako-proxy program: it serves the HTTP API for the cluster
// of a configuration with the given arguments and exits the process.
func Proxy(args []string) {
	const program = "tako-proxy"
	private.Umask() // before anything is written: the cache, the log
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	port := fs.Int("p", 8080, "HTTP `PORT` to serve the API on")
	bind := fs.String("b", "", "`HOST` to bind the HTTP port to (default: every interface)")
	id := fs.String("id", "p1", "the proxy's `ID`, used in logs")
	cfgFile := fs.String("cfg", "", "configuration `FILE`, for use without a coordinator")
	var coordinators cli.Addrs
	fs.Var(&coordinators, "c", "a coordinator's `HOST:PORT`, repeatable: follow the configuration it serves")
	varDir := fs.String("v", "var/tako", "var `DIR`ectory: configuration cache (DIR/etc/ID), private to this user")
	poll := fs.Int("u", 300, "configuration poll interval in `SECONDS`, a fallback to the long-poll (with -c)")
	var logs cli.LogFlags
	logs.Register(fs)
	readToken := cli.TokenFlag(fs, "`FILE` holding the admin token, when the cluster has an auth section: to fetch the configuration, and to present to the nodes' binary ports")
	readCA := cli.CAFlag(fs, "CA certificate `FILE` to verify the coordinators with: with it, -c asks them over HTTPS (for a cluster with a tls section)")
	cli.Usage(fs, "tako-proxy (-c HOST:PORT ... | -cfg FILE) [-p PORT] [-b HOST] [-id ID] [-v DIR] [-u SECONDS] [-d] [-l FILE] [-json]", `
Serves Tako's HTTP API (GET/POST/PUT/DELETE /values/KEY, GET /stat/KEY,
GET /where/KEY, /health, /metrics) in front of the cluster that the configuration describes.
The proxy stores nothing: it sends each request over the binary protocol to a
replica of its key, which coordinates it, and tries another replica when one
does not answer. With -c it follows the configuration its coordinators serve
(starting from its cache in DIR/etc/ID when none answers); with -cfg it reads
the file once. What it writes is readable by its own user only (umask
0077; at start, DIR, DIR/etc and everything under DIR/etc/ID lose their
group and other permissions).

Examples:
  tako-proxy -p 8080 -c tako-coordinator-1.domain.com:4712
  tako-proxy -p 8080 -cfg examples/local_cluster.yaml
  curl -X POST --data-binary hello localhost:8080/values/greeting`)
	cli.Parse(fs, args)
	switch {
	case *port <= 0 || *port > 65535:
		cli.Exit(program, 2, errors.New("-p: port "+strconv.Itoa(*port)+" out of range 1-65535"))
	}
	checkSourceFlags(program, coordinators, *cfgFile, *poll)
	logger, closeLog, err := logs.Logger(program)
	if err != nil {
		cli.Exit(program, 1, err)
	}
	defer closeLog.Close()
	cacheDir := filepath.Join(*varDir, "etc", *id)
	tightenFiles(logger, []string{*varDir, filepath.Join(*varDir, "etc")}, cacheDir)
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
		accept: func(*config.Config) bool { return true },
		want:   "any valid configuration",
	})
	if err != nil {
		if ctx.Err() != nil {
			os.Exit(0)
		}
		cli.Exit(program, 1, err)
	}
	p, err := proxy.New(proxy.Options{ID: *id, Config: src.cfg, Epoch: src.epoch, Addr: net.JoinHostPort(*bind, strconv.Itoa(*port)), Logger: logger, Token: token})
	if err != nil {
		cli.Exit(program, 1, err)
	}
	src.follow(ctx, p.SetConfig)
	stopReload := func() {}
	if src.cfg.TLS != nil {
		stopReload = reloadTLSOnHUP(ctx, logger, p.ReloadTLS)
	}
	stopProfile := startProfile(program, *id, logger)
	err = p.Run(ctx)
	stopProfile()
	stopReload()
	stop()
	src.wait()
	if err != nil {
		cli.Exit(program, 1, err)
	}
	os.Exit(0)
}
