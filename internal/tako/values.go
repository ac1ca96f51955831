package tako

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// keyArg checks a key given on the command line.
func keyArg(cmd, key string) error {
	if key == "" {
		return usageError("tako "+cmd, "the key is empty")
	}
	return nil
}

// notFound is the negative answer for a 404: absent, expired when the
// answer carries the version's X-Expires-At, or deleted when it carries
// the tombstone's timestamp alone.
func notFound(key string, resp *http.Response) error {
	if exp := expiryOf(resp); exp > 0 {
		return answerNo("%q: not found: expired at %d (%s)", key, exp, formatTime(exp))
	}
	if ts := timestampOf(resp); ts > 0 {
		return answerNo("%q: not found: deleted at %d (%s)", key, ts, formatTime(ts))
	}
	return answerNo("%q: not found", key)
}

// expiryOf returns the answer's X-Expires-At, or 0.
func expiryOf(resp *http.Response) int64 {
	exp, err := strconv.ParseInt(resp.Header.Get("X-Expires-At"), 10, 64)
	if err != nil {
		return 0
	}
	return exp
}

// superseded is the negative answer for a 409: a newer version won.
func superseded(key string, resp *http.Response) error {
	ts := timestampOf(resp)
	return answerNo("%q: a newer version exists (timestamp %d, %s); nothing changed", key, ts, formatTime(ts))
}

func runGet(ctx context.Context, r *runner, args []string) error {
	fs := r.commandFlags("get", "KEY", `
Prints the newest value of KEY on stdout, byte for byte (no newline added).
With -t, first prints "timestamp: N" (microseconds since the Unix epoch) on
stderr, and "expires: N" when the value expires. Exits 1 when KEY is not
found, deleted or expired, 2 on any error.

Examples:
  tako get greeting
  tako get -t greeting > greeting.txt`)
	showTS := fs.Bool("t", false, "print the version's timestamp as a line \"timestamp: N\" on stderr, before the value")
	pos, err := r.parseCommand(fs, args, 1, 1)
	if err != nil {
		return err
	}
	key := pos[0]
	if err := keyArg("get", key); err != nil {
		return err
	}
	return r.exchange(ctx, request{method: http.MethodGet, path: "/values/" + escapeKey(key)}, func(resp *http.Response) error {
		switch resp.StatusCode {
		case http.StatusOK:
			if *showTS {
				fmt.Fprintf(r.stderr, "timestamp: %d\n", timestampOf(resp))
				if exp := expiryOf(resp); exp > 0 {
					fmt.Fprintf(r.stderr, "expires: %d\n", exp)
				}
			}
			if _, err := io.Copy(r.stdout, resp.Body); err != nil {
				return fmt.Errorf("reading the value of %q: %w", key, err)
			}
			return nil
		case http.StatusNotFound:
			return notFound(key, resp)
		}
		return r.unexpected(resp)
	})
}

// writeFlags are the flags of put and delete.
type writeFlags struct {
	showTS bool
	at     string
}

func (w *writeFlags) register(r *runner, name, synopsis, description string) *flag.FlagSet {
	fs := r.commandFlags(name, synopsis, description)
	fs.BoolVar(&w.showTS, "t", false, "print the stored version's timestamp as a line \"timestamp: N\" on stdout")
	fs.StringVar(&w.at, "at", "", "write at timestamp `MICROS` (X-Timestamp) instead of the server's clock")
	return fs
}

// header is the X-Timestamp of -at, checked.
func (w *writeFlags) header(cmd string) (http.Header, error) {
	h := http.Header{}
	if w.at == "" {
		return h, nil
	}
	if ts, err := strconv.ParseInt(w.at, 10, 64); err != nil || ts <= 0 {
		return nil, usageError("tako "+cmd, fmt.Sprintf("-at %q: want a positive count of microseconds since the Unix epoch", w.at))
	}
	h.Set("X-Timestamp", w.at)
	return h, nil
}

// written handles the answer to a put or delete.
func (w *writeFlags) written(r *runner, key string, resp *http.Response) error {
	switch resp.StatusCode {
	case http.StatusOK, http.StatusNoContent:
		if w.showTS {
			fmt.Fprintf(r.stdout, "timestamp: %d\n", timestampOf(resp))
		}
		return nil
	case http.StatusConflict:
		return superseded(key, resp)
	}
	return r.unexpected(resp)
}

func runPut(ctx context.Context, r *runner, args []string) error {
	var w writeFlags
	fs := w.register(r, "put", "KEY [FILE|-]", `
Stores the contents of FILE, or of stdin when FILE is "-" or missing, as the
value of KEY. Prints nothing once the write is durable on the key's replicas
(with -t, its timestamp). With -ttl the value expires that long after the
write (X-TTL): from then on KEY reads as not found, until a newer write; a
write without -ttl makes KEY permanent again. Exits 1 when a newer version
of KEY exists (409: nothing changed, possible with -at), 2 on any error.

Examples:
  echo 'hello, world' | tako put greeting
  tako put -t photo.jpg ~/photo.jpg
  echo 'token' | tako put -ttl 15m session/42`)
	ttl := fs.Duration("ttl", 0, "the value expires `DURATION` after the write (whole seconds: 90s, 15m, 24h); at most the deployment's max_ttl")
	pos, err := r.parseCommand(fs, args, 1, 2)
	if err != nil {
		return err
	}
	key := pos[0]
	if err := keyArg("put", key); err != nil {
		return err
	}
	h, err := w.header("put")
	if err != nil {
		return err
	}
	ttlGiven := false
	fs.Visit(func(f *flag.Flag) { ttlGiven = ttlGiven || f.Name == "ttl" })
	if ttlGiven {
		if *ttl < time.Second || *ttl%time.Second != 0 {
			return usageError("tako put", fmt.Sprintf("-ttl %s: want a positive whole number of seconds, such as 90s, 15m or 24h", *ttl))
		}
		h.Set("X-TTL", strconv.FormatInt(int64(*ttl/time.Second), 10))
	}
	value, err := r.readValue(pos[1:])
	if err != nil {
		return err
	}
	h.Set("Content-Type", "application/octet-stream")
	req := request{method: http.MethodPost, path: "/values/" + escapeKey(key), body: bytes.NewReader(value), header: h}
	return r.exchange(ctx, req, func(resp *http.Response) error { return w.written(r, key, resp) })
}

// readValue reads the value of put: the file named, or stdin.
func (r *runner) readValue(file []string) ([]byte, error) {
	if len(file) == 0 || file[0] == "-" {
		value, err := io.ReadAll(r.stdin)
		if err != nil {
			return nil, fmt.Errorf("reading the value from stdin: %w", err)
		}
		return value, nil
	}
	value, err := os.ReadFile(file[0])
	if err != nil {
		return nil, fmt.Errorf("reading the value: %w", err)
	}
	return value, nil
}

func runDelete(ctx context.Context, r *runner, args []string) error {
	var w writeFlags
	fs := w.register(r, "delete", "KEY", `
Deletes KEY: stores a timestamped tombstone on its replicas, which wins over
every older version. Prints nothing on success (with -t, the tombstone's
timestamp). Exits 1 when a newer version exists (409, possible with -at),
2 on any error.

Example:
  tako delete greeting`)
	pos, err := r.parseCommand(fs, args, 1, 1)
	if err != nil {
		return err
	}
	key := pos[0]
	if err := keyArg("delete", key); err != nil {
		return err
	}
	h, err := w.header("delete")
	if err != nil {
		return err
	}
	req := request{method: http.MethodDelete, path: "/values/" + escapeKey(key), header: h}
	return r.exchange(ctx, req, func(resp *http.Response) error { return w.written(r, key, resp) })
}

func runStat(ctx context.Context, r *runner, args []string) error {
	fs := r.commandFlags("stat", "KEY", `
Prints the timestamp of KEY's newest version (microseconds since the Unix
epoch) on stdout, without reading its value. Exits 1 when KEY is not found
or deleted (saying when it was deleted), 2 on any error.

Example:
  tako stat greeting`)
	pos, err := r.parseCommand(fs, args, 1, 1)
	if err != nil {
		return err
	}
	key := pos[0]
	if err := keyArg("stat", key); err != nil {
		return err
	}
	return r.exchange(ctx, request{method: http.MethodGet, path: "/stat/" + escapeKey(key)}, func(resp *http.Response) error {
		switch resp.StatusCode {
		case http.StatusOK:
			fmt.Fprintf(r.stdout, "%d\n", timestampOf(resp))
			return nil
		case http.StatusNotFound:
			return notFound(key, resp)
		}
		return r.unexpected(resp)
	})
}
