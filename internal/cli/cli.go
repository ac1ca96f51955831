// Package cli holds what every Tako program's main shares: the flag of a
// repeatable address, the logger built from -d and -l, and the rule that a
// program fails with one clear line on stderr.
package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/takodb/tako/internal/private"
)

// Addrs is a repeatable HOST:PORT flag (for example -c, once per coordinator).
type Addrs []string

// String implements flag.Value.
func (a *Addrs) String() string { return strings.Join(*a, ",") }

// Set implements flag.Value; it checks that s is a HOST:PORT.
func (a *Addrs) Set(s string) error {
	if _, _, err := net.SplitHostPort(s); err != nil {
		return fmt.Errorf("want HOST:PORT, got %q", s)
	}
	*a = append(*a, s)
	return nil
}

// LogFlags are the logging flags every program has: -d, -l FILE and -json.
type LogFlags struct {
	Debug bool
	File  string
	JSON  bool
}

// Register adds the flags to fs.
func (l *LogFlags) Register(fs *flag.FlagSet) {
	fs.BoolVar(&l.Debug, "d", false, "debug logging: also every request that fails and every peer call's detail")
	fs.StringVar(&l.File, "l", "", "append logs to `FILE` instead of stderr")
	fs.BoolVar(&l.JSON, "json", false, "write logs as JSON lines (log/slog's JSON handler) instead of text")
}

// Logger returns the program's logger as the flags say.
func (l *LogFlags) Logger(program string) (*slog.Logger, io.Closer, error) {
	return Logger(program, l.Debug, l.File, l.JSON)
}

// Logger returns the program's logger: text lines (or JSON lines) on
// stderr, or appended to file when file is not empty; debug lines too when
// debug is set. The closer closes the log file (a no-op for stderr). A log
// file is private to this user: created 0600, and an existing regular file
// loses its group and other permissions (logs name keys, hosts and
// errors); when that fails, the log's first line says so.
func Logger(program string, debug bool, file string, json bool) (*slog.Logger, io.Closer, error) {
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	var w io.Writer = os.Stderr
	var closer io.Closer = io.NopCloser(nil)
	var tightenErr error
	if file != "" {
		f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("opening log file: %w", err)
		}
		tightenErr = private.Tighten(file)
		w, closer = f, f
	}
	var h slog.Handler = slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	if json {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	}
	logger := slog.New(h).With("program", program)
	if tightenErr != nil {
		logger.Warn("could not make the log file private to this user: other users may read it", "err", tightenErr)
	}
	return logger, closer, nil
}

// Usage sets fs's usage text: a synopsis, a paragraph of description, and
// the flags.
func Usage(fs *flag.FlagSet, synopsis, description string) {
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintf(out, "Usage: %s\n\n%s\n\nFlags:\n", synopsis, strings.TrimSpace(description))
		fs.PrintDefaults()
	}
}

// Parse parses args with fs. It exits 0 after printing usage for -h, and 2
// with one line on stderr for a bad flag.
func Parse(fs *flag.FlagSet, args []string) {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(os.Stdout)
		fs.Usage()
		os.Exit(0)
	case err != nil:
		Exit(fs.Name(), 2, fmt.Errorf("%w (see %s -h)", err, fs.Name()))
	}
}

// Exit prints "program: err" as one line on stderr and exits with code.
func Exit(program string, code int, err error) {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	fmt.Fprintf(os.Stderr, "%s: %s\n", program, msg)
	os.Exit(code)
}

// TokenEnv is the environment variable that holds a process's token for a
// cluster with authentication on, when -token-file is not given.
const TokenEnv = "TAKO_TOKEN"

// TokenFlag adds -token-file to fs and returns the function that reads the
// token: from the file (its first line) when the flag is set, else from
// $TAKO_TOKEN; "" when neither is set.
func TokenFlag(fs *flag.FlagSet, usage string) func() (string, error) {
	file := fs.String("token-file", "", usage+" (default: $"+TokenEnv+")")
	return func() (string, error) {
		if *file == "" {
			return strings.TrimSpace(os.Getenv(TokenEnv)), nil
		}
		b, err := os.ReadFile(*file)
		if err != nil {
			return "", fmt.Errorf("reading the token: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		if token := strings.TrimSpace(line); token != "" {
			return token, nil
		}
		return "", fmt.Errorf("-token-file %s: its first line holds no token", *file)
	}
}

// CAEnv is the environment variable that names the CA certificate file to
// verify HTTPS servers with, when -ca is not given.
const CAEnv = "TAKO_CA"

// CAFlag adds -ca to fs and returns the function that loads the CA it
// names (default $TAKO_CA): a TLS configuration that verifies HTTPS
// servers against it, or nil (plain HTTP) when neither is set.
func CAFlag(fs *flag.FlagSet, usage string) func() (*tls.Config, error) {
	file := fs.String("ca", "", usage+" (default: $"+CAEnv+")")
	return func() (*tls.Config, error) {
		path := *file
		if path == "" {
			path = os.Getenv(CAEnv)
		}
		if path == "" {
			return nil, nil
		}
		pem, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("-ca: reading the CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-ca: %s holds no PEM certificate", path)
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
	}
}
