package programs

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/takodb/tako/internal/cli"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/proxy"
)

// Proxy is the tako-proxy program: it serves the HTTP API for the cluster
// of a configuration with the given arguments and exits the process.
func Proxy(args []string) {
	const program = "tako-proxy"
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	port := fs.Int("p", 8080, "HTTP `PORT` to serve the API on")
	bind := fs.String("b", "", "`HOST` to bind the HTTP port to (default: every interface)")
	id := fs.String("id", "p1", "the proxy's `ID`, used in logs")
	cfgFile := fs.String("cfg", "", "configuration `FILE`, for use without a coordinator")
	var coordinators cli.Addrs
	fs.Var(&coordinators, "c", "a coordinator's `HOST:PORT`, repeatable (not available yet: use -cfg)")
	fs.String("v", "var/tako", "var `DIR`ectory (configuration cache)")
	fs.Int("u", 300, "configuration poll interval in `SECONDS` (with -c)")
	debug := fs.Bool("d", false, "debug logging")
	logFile := fs.String("l", "", "append logs to `FILE` instead of stderr")
	cli.Usage(fs, "tako-proxy -cfg FILE [-p PORT] [-b HOST] [-id ID] [-d] [-l FILE]", `
Serves Tako's HTTP API (GET/POST/PUT/DELETE /values/KEY, GET /stat/KEY,
/health, /metrics) in front of the cluster that the configuration describes.
The proxy stores nothing: it sends each request over the binary protocol to a
replica of its key, which coordinates it, and tries another replica when one
does not answer.

Example, in front of the ten nodes of examples/local_cluster.yaml:
  tako-proxy -cfg examples/local_cluster.yaml -p 8080
  curl -X POST --data-binary hello localhost:8080/values/greeting`)
	cli.Parse(fs, args)
	switch {
	case len(coordinators) > 0 && *cfgFile == "":
		cli.Exit(program, 2, errors.New("-c: fetching the configuration from a coordinator is not available in this version; start the proxy with -cfg FILE"))
	case *cfgFile == "":
		cli.Exit(program, 2, errors.New("-cfg FILE is required (see tako-proxy -h)"))
	case *port <= 0 || *port > 65535:
		cli.Exit(program, 2, errors.New("-p: port "+strconv.Itoa(*port)+" out of range 1-65535"))
	}
	cfg, err := config.Load(*cfgFile)
	if err != nil {
		cli.Exit(program, 1, err)
	}
	logger, closeLog, err := cli.Logger(program, *debug, *logFile)
	if err != nil {
		cli.Exit(program, 1, err)
	}
	defer closeLog.Close()
	p, err := proxy.New(proxy.Options{ID: *id, Config: cfg, Addr: net.JoinHostPort(*bind, strconv.Itoa(*port)), Logger: logger})
	if err != nil {
		cli.Exit(program, 1, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := p.Run(ctx); err != nil {
		cli.Exit(program, 1, err)
	}
	os.Exit(0)
}
