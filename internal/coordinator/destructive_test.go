package coordinator

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
)

// Layouts of the destructive rule's tests: buckets of two nodes, every key
// on two buckets (four replicas, a write quorum of three).
const (
	fiveBuckets = "b1:n1,n2 b2:n3,n4 b3:n5,n6 b4:n7,n8 b5:n9,n10"
	sixBuckets  = fiveBuckets + " b6:n11,n12"
	fourBuckets = "b1:n1,n2 b2:n3,n4 b3:n5,n6 b4:n7,n8"
)

// layoutDep is a deployment of a test configuration.
type layoutDep struct {
	name    string
	buckets string // "b1:n1,n2 b2:n3": bucket b1 holds n1 and n2, b2 holds n3
	extra   string // settings, each line indented by four spaces
}

// layoutText returns a configuration that names coordinator c1 on port, the
// active deployment and, when not nil, the target deployment, each keeping
// every key on two buckets. Node nK listens on 127.0.0.1:17000+K (its binary
// port; it has no HTTP port, so the coordinator cannot ask it how far its
// repair is).
func layoutText(port int, active layoutDep, target *layoutDep) string {
	var b strings.Builder
	fmt.Fprintf(&b, "coordinators:\n  c1: [127.0.0.1, %d]\nactive_deployment: %s\n", port, active.name)
	deps := []layoutDep{active}
	if target != nil {
		fmt.Fprintf(&b, "target_deployment: %s\n", target.name)
		deps = append(deps, *target)
	}
	b.WriteString("deployments:\n")
	for _, d := range deps {
		fmt.Fprintf(&b, "  %s:\n%s    hash:\n      buckets_per_key: 2\n    buckets:\n", d.name, d.extra)
		for _, bucket := range strings.Fields(d.buckets) {
			name, nodes, _ := strings.Cut(bucket, ":")
			fmt.Fprintf(&b, "      %s:\n", name)
			for _, id := range strings.Split(nodes, ",") {
				var k int
				fmt.Sscanf(id, "n%d", &k)
				fmt.Fprintf(&b, "        %s: [127.0.0.1, %d]\n", id, 17000+k)
			}
		}
	}
	return b.String()
}

// logBuffer collects a Server's log lines for a test to search.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// lines returns the log lines that contain every one of words.
func (l *logBuffer) lines(words ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range strings.Split(l.buf.String(), "\n") {
		for _, w := range words {
			if !strings.Contains(line, w) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// reloadRig is a running Server of c1.yaml under dir whose logs a test can
// search.
type reloadRig struct {
	s     *Server
	dir   string
	port  int
	logs  *logBuffer
	force string // the force file's path
}

// startRig writes the configuration text(port) and serves it on a loopback
// port until the test ends.
func startRig(t *testing.T, text func(port int) string) *reloadRig {
	t.Helper()
	dir := t.TempDir()
	ln, port := listen(t)
	r := &reloadRig{dir: dir, port: port, logs: &logBuffer{}}
	s, err := newLoggedServer(t, dir, text(port), r.logs)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	r.s = s
	r.force = filepath.Join(dir, "state", "c1", ForceFile)
	run(t, s, ln)
	return r
}

// newLoggedServer writes text as dir/c1.yaml and makes coordinator c1 of
// it, with its state under dir/state/c1, logging to the test and to logs.
func newLoggedServer(t *testing.T, dir, text string, logs *logBuffer) (*Server, error) {
	t.Helper()
	path := filepath.Join(dir, "c1.yaml")
	writeFile(t, path, text)
	logger := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), logs), &slog.HandlerOptions{Level: slog.LevelDebug}))
	return NewServer(ServerOptions{ID: "c1", ConfigPath: path, StateDir: filepath.Join(dir, "state", "c1"), Logger: logger})
}

// reload writes text as the file and reloads it.
func (r *reloadRig) reload(t *testing.T, text string) error {
	t.Helper()
	writeFile(t, filepath.Join(r.dir, "c1.yaml"), text)
	return r.s.Reload()
}

// served returns what GET /configuration answers: the epoch and the body.
func (r *reloadRig) served(t *testing.T) (int64, string) {
	t.Helper()
	code, epoch, body := get(t, http.DefaultClient, "http://"+r.s.Addr()+"/configuration")
	if code != http.StatusOK {
		t.Fatalf("GET /configuration: %d %s", code, body)
	}
	return epoch, body
}

// reloads returns the line of tako_coordinator_reloads_total for result
// that GET /metrics answers.
func (r *reloadRig) reloads(t *testing.T, result string) string {
	t.Helper()
	_, _, m := get(t, http.DefaultClient, "http://"+r.s.Addr()+"/metrics")
	prefix := fmt.Sprintf(`tako_coordinator_reloads_total{result=%q} `, result)
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

// TestReloadRefusesADestructiveChange: with no migration under way, a
// reload after which some keys keep fewer of their current replicas than
// the new write quorum needs is refused (the configuration and epoch
// served stay, the refusal is counted and logged in one line saying what
// the change would do and what to do instead); a change that keeps a write
// quorum of every key's current replicas is served.
func TestReloadRefusesADestructiveChange(t *testing.T) {
	main := layoutDep{name: "main", buckets: fiveBuckets}
	tests := []struct {
		name   string
		active layoutDep
		target *layoutDep
		refuse bool
		words  []string // in the error and the log line of a refusal
	}{
		{name: "a bucket dropped", active: layoutDep{name: "main", buckets: fourBuckets}, refuse: true,
			words: []string{"nodes dropped: n9, n10", "target_deployment", ForceFile, "% of the key space"}},
		{name: "a bucket's nodes renamed", active: layoutDep{name: "main", buckets: strings.Replace(fiveBuckets, "b1:n1,n2", "b1:n11,n12", 1)},
			refuse: true, words: []string{"nodes dropped: n1, n2", "nodes added: n11, n12"}},
		{name: "a whole new layout under a new name", active: layoutDep{name: "other", buckets: "c1:n1,n2 c2:n3,n4 c3:n5,n6 c4:n7,n8 c5:n9,n10"},
			refuse: true, words: []string{"with none of them"}},
		{name: "a timeout changed", active: layoutDep{name: "main", buckets: fiveBuckets, extra: "    request_timeout: 3s\n"}},
		{name: "a mirror node removed", active: layoutDep{name: "main", buckets: strings.Replace(fiveBuckets, "n9,n10", "n9", 1)}},
		{name: "a mirror node added", active: layoutDep{name: "main", buckets: strings.Replace(fiveBuckets, "n9,n10", "n9,n10,n11", 1)}},
		{name: "a migration started", active: main, target: &layoutDep{name: "six", buckets: sixBuckets}},
		{name: "a migration to four buckets started", active: main, target: &layoutDep{name: "four", buckets: fourBuckets}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRig(t, func(port int) string { return layoutText(port, main, nil) })
			epoch0, body0 := r.served(t)
			err := r.reload(t, layoutText(r.port, tt.active, tt.target))
			epoch1, body1 := r.served(t)
			if !tt.refuse {
				if err != nil {
					t.Fatalf("Reload: %v", err)
				}
				if epoch1 <= epoch0 || body1 == body0 {
					t.Fatalf("the change is not served: epoch %d -> %d", epoch0, epoch1)
				}
				if got := r.reloads(t, reloadOK); !strings.HasSuffix(got, " 1") {
					t.Errorf("metrics: %q, want the reload counted as ok", got)
				}
				return
			}
			if !errors.Is(err, ErrDestructive) {
				t.Fatalf("Reload: %v, want an error wrapping ErrDestructive", err)
			}
			if epoch1 != epoch0 || body1 != body0 {
				t.Errorf("a refused reload changed what is served: epoch %d -> %d", epoch0, epoch1)
			}
			if cfg, e := r.s.Current(); e != epoch0 || canonicalOf(t, cfg) != body0 {
				t.Errorf("Current after a refused reload: epoch %d, want %d and the same configuration", e, epoch0)
			}
			if got := r.reloads(t, reloadRefused); !strings.HasSuffix(got, " 1") {
				t.Errorf("metrics: %q, want the reload counted as refused", got)
			}
			if got := r.reloads(t, reloadOK); !strings.HasSuffix(got, " 0") {
				t.Errorf("metrics: %q, want no reload counted as ok", got)
			}
			lines := r.logs.lines("level=ERROR", "refusing the reload")
			if len(lines) != 1 {
				t.Fatalf("%d Error lines say the reload is refused, want 1:\n%s", len(lines), strings.Join(lines, "\n"))
			}
			for _, w := range tt.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("the error does not say %q: %v", w, err)
				}
				if !strings.Contains(lines[0], w) {
					t.Errorf("the log line does not say %q: %s", w, lines[0])
				}
			}
			// The same file reloaded again is refused again: nothing was
			// recorded as if it had been served.
			if err := r.s.Reload(); !errors.Is(err, ErrDestructive) {
				t.Errorf("second Reload: %v, want ErrDestructive again", err)
			}
			if e, _ := r.served(t); e != epoch0 {
				t.Errorf("after a second refusal the epoch is %d, want %d", e, epoch0)
			}
		})
	}
}

// TestForceFileLetsOneDestructiveReloadThrough: with the force file in the
// state directory a destructive reload is served, logged at Warn, and the
// file is gone; the next destructive reload is refused again.
func TestForceFileLetsOneDestructiveReloadThrough(t *testing.T) {
	r := startRig(t, func(port int) string { return layoutText(port, layoutDep{name: "main", buckets: fiveBuckets}, nil) })
	epoch0, _ := r.served(t)
	writeFile(t, r.force, "")
	if err := r.reload(t, layoutText(r.port, layoutDep{name: "main", buckets: fourBuckets}, nil)); err != nil {
		t.Fatalf("Reload with the force file: %v", err)
	}
	epoch1, _ := r.served(t)
	if epoch1 <= epoch0 {
		t.Fatalf("the forced reload is not served: epoch %d -> %d", epoch0, epoch1)
	}
	if cfg, _ := r.s.Current(); len(cfg.Nodes()) != 8 {
		t.Errorf("the forced configuration has %d nodes, want 8", len(cfg.Nodes()))
	}
	if _, err := os.Stat(r.force); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the force file is still there after use: %v", err)
	}
	if lines := r.logs.lines("level=WARN", "forced", "nodes dropped: n9, n10"); len(lines) != 1 {
		t.Errorf("%d Warn lines about the forced reload, want 1", len(lines))
	}
	// Used once: the next destructive change is refused.
	err := r.reload(t, layoutText(r.port, layoutDep{name: "main", buckets: "b1:n1,n2 b2:n3,n4 b3:n5,n6"}, nil))
	if !errors.Is(err, ErrDestructive) {
		t.Fatalf("a second destructive Reload: %v, want ErrDestructive", err)
	}
	if e, _ := r.served(t); e != epoch1 {
		t.Errorf("the refused reload moved the epoch %d -> %d", epoch1, e)
	}
	if got := r.reloads(t, reloadRefused); !strings.HasSuffix(got, " 1") {
		t.Errorf("metrics: %q, want one refused reload", got)
	}
}

// TestDestructiveRuleDuringAMigration: during a migration, a file whose
// active deployment places keys as neither the active nor the target
// deployment does is judged by the destructive rule; a promotion (by name,
// or under another name) still waits for the migration to converge; a
// harmless change is served.
func TestDestructiveRuleDuringAMigration(t *testing.T) {
	main := layoutDep{name: "main", buckets: fiveBuckets}
	six := layoutDep{name: "six", buckets: sixBuckets}
	tests := []struct {
		name   string
		active layoutDep
		target *layoutDep
		is     error // nil: served
	}{
		{name: "a third layout, with no target", active: layoutDep{name: "main", buckets: fourBuckets}, is: ErrDestructive},
		{name: "a third layout under the target's name", active: layoutDep{name: "six", buckets: fourBuckets}, is: ErrDestructive},
		{name: "a third layout with a third target", active: layoutDep{name: "other", buckets: "c1:n1,n2 c2:n3,n4 c3:n5,n6 c4:n7,n8 c5:n9,n10"},
			target: &layoutDep{name: "four", buckets: fourBuckets}, is: ErrDestructive},
		{name: "the target promoted before convergence", active: six, is: ErrNotConverged},
		{name: "the target promoted under another name", active: layoutDep{name: "renamed", buckets: sixBuckets}, is: ErrNotConverged},
		{name: "a mirror node added to the active deployment", active: layoutDep{name: "main", buckets: strings.Replace(fiveBuckets, "n1,n2", "n1,n2,n13", 1)}, target: &six},
		{name: "a timeout changed", active: layoutDep{name: "main", buckets: fiveBuckets, extra: "    request_timeout: 3s\n"}, target: &six},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRig(t, func(port int) string { return layoutText(port, main, &six) })
			epoch0, body0 := r.served(t)
			err := r.reload(t, layoutText(r.port, tt.active, tt.target))
			epoch1, body1 := r.served(t)
			if tt.is == nil {
				if err != nil || epoch1 <= epoch0 {
					t.Fatalf("Reload: %v, epoch %d -> %d; want the change served", err, epoch0, epoch1)
				}
				return
			}
			if !errors.Is(err, tt.is) {
				t.Fatalf("Reload: %v, want an error wrapping %v", err, tt.is)
			}
			if epoch1 != epoch0 || body1 != body0 {
				t.Errorf("a refused reload changed what is served: epoch %d -> %d", epoch0, epoch1)
			}
			if got := r.reloads(t, reloadRefused); !strings.HasSuffix(got, " 1") {
				t.Errorf("metrics: %q, want the reload counted as refused", got)
			}
			if tt.is == ErrDestructive && !strings.Contains(err.Error(), `during the migration from "main" to "six"`) {
				t.Errorf("the error does not say it is judged against the migration under way: %v", err)
			}
		})
	}
}

// TestStartWithADestructiveFile: the epoch state of a coordinator that
// serves its own file keeps only the hash of what it served, so a changed
// file at start is served, destructive or not (the rule applies to
// reloads); the state of a follower that adopted the master's configuration
// keeps that configuration, and a destructive file at start is then refused
// as a reload would be: the adopted configuration stays served under its
// epoch, unless the force file is there.
func TestStartWithADestructiveFile(t *testing.T) {
	five := func(port int) string { return layoutText(port, layoutDep{name: "main", buckets: fiveBuckets}, nil) }
	four := func(port int) string { return layoutText(port, layoutDep{name: "main", buckets: fourBuckets}, nil) }

	t.Run("own file", func(t *testing.T) {
		dir := t.TempDir()
		port := freePort(t)
		s, err := newLoggedServer(t, dir, five(port), &logBuffer{})
		if err != nil {
			t.Fatal(err)
		}
		_, epoch0 := s.Current()
		s, err = newLoggedServer(t, dir, four(port), &logBuffer{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg, e := s.Current(); e <= epoch0 || len(cfg.Nodes()) != 8 {
			t.Fatalf("after a restart with a changed file: epoch %d (before %d), %d nodes; want the file under a new epoch", e, epoch0, len(cfg.Nodes()))
		}
	})

	// adopted writes the state of a follower that adopted five (at epoch
	// 1000, over a file that was something else) and returns five's
	// canonical JSON.
	adopted := func(t *testing.T, dir string, port int) string {
		t.Helper()
		cfg, err := config.Parse([]byte(five(port)))
		if err != nil {
			t.Fatal(err)
		}
		body, sum, err := canonical(cfg)
		if err != nil {
			t.Fatal(err)
		}
		st := epochState{Epoch: 1000, SHA256: sum, FileSHA256: strings.Repeat("0", 64), Configuration: body}
		if err := writeState(filepath.Join(dir, "state", "c1"), st); err != nil {
			t.Fatal(err)
		}
		return string(body)
	}

	t.Run("adopted configuration", func(t *testing.T) {
		dir := t.TempDir()
		ln, port := listen(t)
		body := adopted(t, dir, port)
		logs := &logBuffer{}
		s, err := newLoggedServer(t, dir, four(port), logs)
		if err != nil {
			t.Fatal(err)
		}
		if cfg, e := s.Current(); e != 1000 || canonicalOf(t, cfg) != body {
			t.Fatalf("after a restart with a destructive file: epoch %d, want the adopted configuration at 1000", e)
		}
		if lines := logs.lines("level=ERROR", "refusing the changed configuration file at start", "nodes dropped: n9, n10"); len(lines) != 1 {
			t.Errorf("%d Error lines say why the file is not served, want 1", len(lines))
		}
		run(t, s, ln)
		// A reload of the same file is refused too; the force file lets it
		// through.
		if err := s.Reload(); !errors.Is(err, ErrDestructive) {
			t.Fatalf("Reload of the destructive file: %v, want ErrDestructive", err)
		}
		writeFile(t, filepath.Join(dir, "state", "c1", ForceFile), "")
		if err := s.Reload(); err != nil {
			t.Fatalf("forced Reload: %v", err)
		}
		if cfg, e := s.Current(); e <= 1000 || len(cfg.Nodes()) != 8 {
			t.Fatalf("after the forced reload: epoch %d, %d nodes; want the file under a new epoch", e, len(cfg.Nodes()))
		}
	})

	t.Run("adopted configuration, forced", func(t *testing.T) {
		dir := t.TempDir()
		port := freePort(t)
		adopted(t, dir, port)
		force := filepath.Join(dir, "state", "c1", ForceFile)
		writeFile(t, force, "")
		logs := &logBuffer{}
		s, err := newLoggedServer(t, dir, four(port), logs)
		if err != nil {
			t.Fatal(err)
		}
		if cfg, e := s.Current(); e <= 1000 || len(cfg.Nodes()) != 8 {
			t.Fatalf("after a forced restart: epoch %d, %d nodes; want the file under a new epoch", e, len(cfg.Nodes()))
		}
		if _, err := os.Stat(force); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the force file is still there after use: %v", err)
		}
		if lines := logs.lines("level=WARN", "forced"); len(lines) != 1 {
			t.Errorf("%d Warn lines about the forced start, want 1", len(lines))
		}
	})

	t.Run("adopted configuration, harmless change", func(t *testing.T) {
		dir := t.TempDir()
		port := freePort(t)
		adopted(t, dir, port)
		s, err := newLoggedServer(t, dir, layoutText(port, layoutDep{name: "main", buckets: fiveBuckets, extra: "    request_timeout: 3s\n"}, nil), &logBuffer{})
		if err != nil {
			t.Fatal(err)
		}
		if cfg, e := s.Current(); e <= 1000 || cfg.Active.RequestTimeout != 3*time.Second {
			t.Fatalf("after a restart with a harmless change: epoch %d, request_timeout %v; want the file under a new epoch", e, cfg.Active.RequestTimeout)
		}
	})
}
