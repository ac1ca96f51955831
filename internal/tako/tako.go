// Package tako is the tako command: an operator's and a script's client of
// a Tako cluster over its HTTP API. It reads and writes keys through a proxy
// or any node's HTTP port, shows where a key lives and what each replica
// holds (GET /where/KEY), asks a coordinator for the cluster's status (GET
// /status), and compares two configuration files without any server.
//
// Main is the whole program, with its inputs and outputs as arguments so
// that tests run it in-process; cmd/tako only calls it.
package tako

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Exit codes of the tako command.
const (
	exitOK = 0
	// exitNo: the command worked and the answer is "no": the key is not
	// found or deleted, a newer version won, a node is down, a plan loses
	// data.
	exitNo = 1
	// exitError: bad usage, or the command could not get an answer.
	exitError = 2
)

// DefaultServer is the server tako talks to without -s or TAKO_SERVER: the
// proxy of tako-cluster.
const DefaultServer = "localhost:8080"

// defaultTimeout bounds one exchange with the server.
const defaultTimeout = 30 * time.Second

// codedError is an error together with the exit code it causes.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

// answerNo is an error that exits 1: the command worked, the answer is no.
func answerNo(format string, args ...any) error {
	return &codedError{code: exitNo, err: fmt.Errorf(format, args...)}
}

// errHelpShown reports that a -h asked for usage, which was printed: exit 0.
var errHelpShown = errors.New("help shown")

// command is one subcommand of tako.
type command struct {
	name    string
	args    string // the synopsis after the name
	summary string // one line for tako -h
	run     func(ctx context.Context, r *runner, args []string) error
}

// commands are tako's subcommands, in the order tako -h lists them.
var commands = []command{
	{"get", "KEY", "print KEY's value on stdout", runGet},
	{"put", "KEY [FILE|-]", "store FILE, or stdin, as KEY's value", runPut},
	{"delete", "KEY", "delete KEY", runDelete},
	{"stat", "KEY", "print the timestamp of KEY's newest version", runStat},
	{"where", "KEY", "show KEY's replicas and what each one holds", runWhere},
	{"purge", "KEY", "remove KEY from every replica, whatever its versions (admin)", runPurge},
	{"status", "", "show the cluster as its coordinator sees it (-s COORDINATOR)", runStatus},
	{"backup", "FILE | verify FILE... | ls FILE...", "copy the whole cluster into an archive while it serves (-s COORDINATOR, admin)", runBackup},
	{"restore", "FILE...", "write archives back into a cluster of any shape (-s COORDINATOR, admin)", runRestore},
	{"snapshot", "DIR", "make a copy of one node's store in DIR on its machine (-s NODE, admin)", runSnapshot},
	{"plan", "OLD.yaml NEW.yaml", "show what a configuration change moves (no server needed)", runPlan},
	{"token", "ROLE NAME", "make a new token, and the lines that grant it ROLE in the configuration", runToken},
	{"certs", "DIR [HOST ...]", "make a CA and a certificate for mutual TLS, and the tls lines of the configuration", runCerts},
}

// runner holds what every subcommand shares: the server and the streams.
type runner struct {
	server string // HOST:PORT, or a base URL
	token  string // bearer token; "" sends none
	ca     string // CA certificate file that verifies HTTPS servers; "" for none
	// caLoaded is set once the client verifies with the CA of ca.
	caLoaded bool
	timeout  time.Duration
	stdin    io.Reader
	stdout   io.Writer
	stderr   io.Writer
	client   *http.Client
}

// Main runs the tako command with args (without the program name), the
// environment lookup env (os.Getenv), and the given streams, and returns
// the exit code: 0 success, 1 a negative answer (not found, a newer
// version won, a node down, a plan that loses data), 2 bad usage or no
// answer. Every failure is one line on stderr.
func Main(args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	server := env("TAKO_SERVER")
	if server == "" {
		server = DefaultServer
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	defer transport.CloseIdleConnections()
	r := &runner{server: server, token: strings.TrimSpace(env("TAKO_TOKEN")), ca: env("TAKO_CA"), timeout: defaultTimeout,
		stdin: stdin, stdout: stdout, stderr: stderr, client: &http.Client{Transport: transport}}
	return r.exitCode(r.run(context.Background(), args))
}

// run parses the global flags and runs the subcommand.
func (r *runner) run(ctx context.Context, args []string) error {
	fs := r.globalFlags()
	if err := r.parseFlags(fs, args); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) == 0 {
		return usageError("tako", "no command given")
	}
	name, rest := args[0], args[1:]
	if name == "help" {
		return r.help(ctx, rest)
	}
	for _, c := range commands {
		if c.name == name {
			return c.run(ctx, r, rest)
		}
	}
	return usageError("tako", fmt.Sprintf("unknown command %q", name))
}

// help answers tako help [COMMAND].
func (r *runner) help(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fs := r.globalFlags()
		fs.SetOutput(r.stdout)
		fs.Usage()
		return errHelpShown
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(ctx, r, []string{"-h"})
		}
	}
	return usageError("tako", fmt.Sprintf("unknown command %q", args[0]))
}

// exitCode prints err, if any, as one line on stderr and maps it to the
// exit code.
func (r *runner) exitCode(err error) int {
	if err == nil || errors.Is(err, errHelpShown) {
		return exitOK
	}
	code := exitError
	var ce *codedError
	if errors.As(err, &ce) {
		code = ce.code
	}
	fmt.Fprintf(r.stderr, "tako: %s\n", strings.ReplaceAll(err.Error(), "\n", "; "))
	return code
}

// usageError is bad usage of tako or of one of its commands: exit 2.
func usageError(cmd, msg string) error {
	return &codedError{code: exitError, err: fmt.Errorf("%s (see %s -h)", msg, cmd)}
}

// globalFlags returns the flag set of tako itself.
func (r *runner) globalFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("tako", flag.ContinueOnError)
	r.serverFlags(fs)
	fs.Usage = func() { r.printTopUsage(fs) }
	return fs
}

// serverFlags adds -s, -ca, -timeout and -token to fs: every command accepts them.
func (r *runner) serverFlags(fs *flag.FlagSet) {
	fs.StringVar(&r.server, "s", r.server, "the server's `HOST:PORT` (or http://HOST:PORT, https://HOST:PORT): a proxy or a node for keys, the coordinator for status; $TAKO_SERVER sets the default")
	fs.StringVar(&r.ca, "ca", r.ca, "the CA certificate `FILE` to verify an HTTPS server with (a cluster with a tls section); with it, -s HOST:PORT means https; $TAKO_CA sets the default")
	fs.DurationVar(&r.timeout, "timeout", r.timeout, "how long to wait for the server's answer, a `DURATION` such as 5s")
	fs.StringVar(&r.token, "token", r.token, "the `TOKEN` to send (Authorization: Bearer), for a cluster with an auth section; $TAKO_TOKEN sets the default")
}

// parseFlags parses the global flags; it stops at the command's name.
func (r *runner) parseFlags(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(r.stdout)
		fs.Usage()
		return errHelpShown
	case err != nil:
		return usageError("tako", err.Error())
	}
	return nil
}

const topDescription = `tako talks to a Tako cluster over HTTP: to a proxy, or any node's HTTP
port, to read and write keys and see where they live; to the coordinator for
the cluster's status. plan needs no server.`

const topExample = `Example session (tako-cluster running: its proxy is localhost:8080, its
coordinator localhost:4700):
  echo 'hello, world' | tako put greeting
  tako get greeting
  tako -s localhost:5701 where greeting
  tako -s localhost:4700 status
  tako plan examples/local_cluster.yaml examples/migration/1-add-bucket.yaml

Exit status: 0 success; 1 the answer is no (not found or deleted, a newer
version won, a node is down, the plan loses data); 2 bad usage or no answer
(the server unreachable, a 5xx). Errors are one line on stderr.`

// printTopUsage prints tako -h: the commands, the flags, an example.
func (r *runner) printTopUsage(fs *flag.FlagSet) {
	out := fs.Output()
	fmt.Fprintf(out, "Usage: tako [-s HOST:PORT] [-timeout DURATION] COMMAND [ARGS]\n\n%s\n\nCommands:\n", topDescription)
	for _, c := range commands {
		fmt.Fprintf(out, "  %-26s %s\n", strings.TrimSpace(c.name+" "+c.args), c.summary)
	}
	fmt.Fprintf(out, "\nRun tako COMMAND -h for what a command does, with an example.\n\nFlags (also after the command):\n")
	fs.PrintDefaults()
	fmt.Fprintf(out, "\n%s\n", topExample)
}
