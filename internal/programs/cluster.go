package programs

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/takodb/tako/internal/cli"
	"github.com/takodb/tako/internal/localcluster"
	"github.com/takodb/tako/internal/private"
)

// Cluster is the tako-cluster program: it runs every node of a
// configuration and a proxy on this machine, and exits the process when
// they have stopped. In child mode (see localcluster.ChildArgs) it runs one
// node or proxy instead.
func Cluster(args []string) {
	if role, rest, ok := localcluster.ChildArgs(args); ok {
		switch role {
		case localcluster.ChildNode:
			Node(rest)
		case localcluster.ChildCoordinator:
			Coordinator(rest)
		}
		Proxy(rest)
	}
	const program = "tako-cluster"
	private.Umask() // before anything is written; the children inherit it, and set it too
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	port := fs.Int("p", 8080, "the proxy's HTTP `PORT` (0: no proxy)")
	varDir := fs.String("v", "var/tako", "var `DIR`ectory: every node's data and every process's log, private to this user")
	withTLS := fs.Bool("tls", false, "TLS on: HTTPS on every HTTP port, mutual TLS on the binary ports, with a CA and a certificate made in DIR/tls (and reused from there)")
	var logs cli.LogFlags
	logs.Register(fs)
	cli.Usage(fs, "tako-cluster [FILE] [-p PORT] [-v DIR] [-tls]", `
Runs every node of the configuration FILE, and a proxy in front of them, as
processes on this machine, for development and trials. With no FILE it runs
the built-in local cluster: ten nodes on 127.0.0.1 (HTTP ports 5701-5710,
binary ports 4701-4710) in five buckets of two, every key on two buckets
(four nodes), and a coordinator on 4700. Data and logs go under DIR/data/ID
and DIR/log/ID.log. Ctrl-C stops them all. Everything under DIR is readable
by this user only: every process runs with umask 0077, and at start each
takes group and other permissions away from what older versions left there
(tako-cluster from DIR's logs and certificates, each child from its own
files).

With -tls the cluster runs with TLS on: every HTTP port (proxy, nodes,
coordinators) serves HTTPS only, and the binary ports speak mutual TLS. The
first run makes a CA and a certificate for every process (naming localhost,
127.0.0.1, ::1 and the configuration's hosts) in DIR/tls, as tako certs does;
later runs reuse them, so clients keep trusting the same CA. The processes
run with a copy of FILE that has a tls section naming them, DIR/tls/NAME
(NAME being FILE's name), which Go clients can open too. It prints the CA to
verify the cluster with (curl --cacert DIR/tls/ca.pem, tako -ca
DIR/tls/ca.pem). A FILE with a tls section of its own runs with TLS on, with
its files, with or without -tls.

A FILE with an auth section needs TAKO_TOKEN set to an admin token it lists:
every process fetches the configuration and calls the others with it.

Examples:
  tako-cluster
  curl -X POST --data-binary hello localhost:8080/values/greeting
  curl localhost:8080/values/greeting

  tako-cluster -tls
  curl --cacert var/tako/tls/ca.pem https://localhost:8080/values/greeting
  tako -ca var/tako/tls/ca.pem -s https://localhost:8080 get greeting`)
	// FILE may come before or after the flags.
	var file string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		file, args = args[0], args[1:]
	}
	cli.Parse(fs, args)
	if fs.NArg() > 1 || (fs.NArg() == 1 && file != "") {
		cli.Exit(program, 2, fmt.Errorf("want at most one configuration FILE, got %q (see tako-cluster -h)", fs.Args()))
	}
	if fs.NArg() == 1 {
		file = fs.Arg(0)
	}
	if *port < 0 || *port > 65535 {
		cli.Exit(program, 2, errors.New("-p: port "+strconv.Itoa(*port)+" out of range 0-65535"))
	}
	logger, closeLog, err := logs.Logger(program)
	if err != nil {
		cli.Exit(program, 1, err)
	}
	defer closeLog.Close()
	tightenFiles(logger,
		[]string{*varDir, filepath.Join(*varDir, "etc"), filepath.Join(*varDir, "data"), filepath.Join(*varDir, "coordinator"),
			filepath.Join(*varDir, "etc", "local_cluster.yaml")},
		filepath.Join(*varDir, "log"), filepath.Join(*varDir, localcluster.TLSDirName))
	if file == "" {
		file = filepath.Join(*varDir, "etc", "local_cluster.yaml")
		if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
			cli.Exit(program, 1, err)
		}
		if err := os.WriteFile(file, localcluster.DefaultConfig, 0o600); err != nil {
			cli.Exit(program, 1, fmt.Errorf("writing the built-in configuration: %w", err))
		}
		logger.Info("using the built-in local cluster configuration", "written_to", file)
	}
	exe, err := os.Executable()
	if err != nil {
		cli.Exit(program, 1, fmt.Errorf("finding this program's binary: %w", err))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = localcluster.Run(ctx, localcluster.Options{ConfigPath: file, ProxyPort: *port, VarDir: *varDir, Exe: exe, Logger: logger, TLS: *withTLS})
	if err != nil {
		cli.Exit(program, 1, err)
	}
	os.Exit(0)
}
