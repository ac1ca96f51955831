// Command tako-bench drives a running Tako cluster with concurrent clients
// and prints operations per second and latency percentiles per operation.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/cli"
	"github.com/takodb/tako/internal/loadgen"
)

const program = "tako-bench"

func main() {
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	url := fs.String("url", "", "`BASE` URL of the HTTP API (a proxy or a node), http:// or https:// (default http://localhost:8080, https://localhost:8080 with -ca)")
	readCA := cli.CAFlag(fs, "CA certificate `FILE` to verify an https -url with (tako-cluster -tls prints it); without it, https is verified with the system's roots")
	readToken := cli.TokenFlag(fs, "`FILE` holding the token the Go client presents to the nodes with -cfg, for a cluster with an auth section (write, for -op post or mix)")
	cfgFile := fs.String("cfg", "", "configuration `FILE`: use the Go client straight to the nodes instead of HTTP (with the file's tls section, if any)")
	forward := fs.Bool("forward", false, "with -cfg: the Go client sends each request to one replica of the key, which coordinates it (client.Options.Forward), instead of coordinating it itself; a client from a file whose nodes follow a coordinator does that anyway once the nodes refuse its epoch 0")
	clients := fs.Int("c", 16, "concurrent clients")
	duration := fs.Duration("d", 10*time.Second, "how long to run each phase")
	size := fs.Int("size", 100, "value size in bytes")
	keys := fs.Int("keys", 100_000, "keyspace size")
	op := fs.String("op", "mix", "workload: get, post, or mix (90% GET, 10% POST)")
	prefill := fs.Bool("prefill", false, "write every key once before the run")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load generator (and, with -cfg, the Go client in it) to `FILE` (go tool pprof)")
	ceiling := fs.String("ceiling", "", "serve the ceiling (a map behind a mutex over net/http, no disk, no replication) on `ADDR` until stopped, instead of driving a cluster")
	cli.Usage(fs, "tako-bench [-url BASE [-ca FILE] | -cfg FILE [-token-file FILE]] [-c N] [-d DURATION] [-size BYTES] [-keys N] [-op get|post|mix] [-prefill] | -ceiling ADDR", `
Drives a running Tako cluster with N concurrent clients for a while and prints,
per operation, the throughput and the p50, p99 and p99.9 latencies. By default
it speaks HTTP to the proxy at localhost:8080; with -cfg it uses the Go client
straight to the nodes of the configuration (no proxy), over mutual TLS when the
configuration has a tls section.

An https:// -url is verified with the CA of -ca (or $TAKO_CA), or with the
system's roots without one. Over HTTPS as over HTTP, each client keeps its
HTTP/1.1 connection alive, so the handshakes happen at the start only.

With -ceiling it serves the reference instead: a map behind a mutex over
net/http, that tako-bench -url can drive like a proxy. scripts/bench.sh runs
the whole comparison.

Examples, against the cluster of go run ./cmd/tako-cluster, then of
go run ./cmd/tako-cluster -tls:
  tako-bench -prefill -op get -c 64 -d 10s
  tako-bench -ca var/tako/tls/ca.pem -url https://localhost:8080 -op get -c 64 -d 10s`)
	cli.Parse(fs, os.Args[1:])
	if *ceiling != "" {
		// The reference of every HTTP figure, as its own process.
		srv := &http.Server{Addr: *ceiling, Handler: &loadgen.Ceiling{}}
		fmt.Printf("ceiling serving on %s\n", *ceiling)
		cli.Exit(program, 1, srv.ListenAndServe())
	}
	read := map[string]float64{"get": 1, "post": 0, "mix": 0.9}
	frac, ok := read[*op]
	if !ok {
		cli.Exit(program, 2, errors.New("-op: want get, post or mix, got "+*op))
	}
	caTLS, err := readCA()
	if err != nil {
		cli.Exit(program, 1, err)
	}
	caFlag := false // -ca given on the command line, not by $TAKO_CA
	fs.Visit(func(f *flag.Flag) { caFlag = caFlag || f.Name == "ca" })
	switch {
	case caFlag && *cfgFile != "":
		cli.Exit(program, 2, errors.New("-ca is for an https -url; with -cfg the Go client uses the configuration's tls section"))
	case *url == "" && caTLS != nil:
		*url = "https://localhost:8080"
	case *url == "":
		*url = "http://localhost:8080"
	}
	if caFlag && !strings.HasPrefix(*url, "https://") {
		cli.Exit(program, 2, fmt.Errorf("-ca verifies HTTPS: want an https:// -url, got %q", *url))
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			cli.Exit(program, 1, fmt.Errorf("-cpuprofile: %w", err))
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	var target loadgen.Target
	desc := "HTTP " + *url
	if *cfgFile != "" {
		token, err := readToken()
		if err != nil {
			cli.Exit(program, 1, err)
		}
		c, err := client.Open(*cfgFile, client.Options{Token: token, Forward: *forward})
		if err != nil {
			cli.Exit(program, 1, err)
		}
		defer c.Close()
		target = loadgen.ClientTarget{C: c}
		desc = "Go client, nodes of " + *cfgFile
		if *forward {
			desc += ", forwarding"
		}
	} else {
		target = loadgen.NewHTTPTarget(*url, *clients, caTLS)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	o := loadgen.Options{Clients: *clients, Duration: *duration, Keys: *keys, ValueSize: *size, ReadFraction: frac}
	if *prefill {
		start := time.Now()
		if err := loadgen.Prefill(ctx, target, o); err != nil {
			cli.Exit(program, 1, err)
		}
		fmt.Printf("prefilled %d keys of %d B in %s\n", *keys, *size, time.Since(start).Round(time.Millisecond))
	}
	fmt.Printf("%s: %s, %d clients, %d B values, %d keys, %s\n", desc, *op, *clients, *size, *keys, *duration)
	failed := false
	for _, r := range loadgen.Run(ctx, target, o) {
		fmt.Println(r)
		failed = failed || r.Errors > 0
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
