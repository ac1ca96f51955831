package coordinator

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEpoch(t *testing.T) {
	const port = 4712
	coords := []coord{{"c1", port}}
	base := configText("", coords, "n1", "n2")
	tests := []struct {
		name    string
		edit    string // the file's new content
		restart bool   // a new Server on the same StateDir, instead of Reload
		clock   time.Time
		want    string // "same", "higher" or "invalid"
	}{
		{name: "unchanged file keeps its epoch on reload", edit: base, want: "same"},
		{name: "unchanged file keeps its epoch across a restart", edit: base, restart: true, want: "same"},
		{name: "changed content gets a higher epoch on reload", edit: configText("", coords, "n1", "n2", "n3"), want: "higher"},
		{name: "changed content gets a higher epoch across a restart", edit: configText("", coords, "n1"), restart: true, want: "higher"},
		{name: "comments only keep the epoch", edit: "# edited by hand\n" + strings.ReplaceAll(base, "\n", "  # note\n"), want: "same"},
		{name: "comments only keep the epoch across a restart", edit: "# edited\n" + base, restart: true, want: "same"},
		{name: "layout and spelled-out defaults keep the epoch", want: "same", edit: fmt.Sprintf(
			"coordinators: {c1: [127.0.0.1, %d]}\nactive_deployment: cluster\ndeployments: {cluster: {read_repair: yes, "+
				"write_quorum: quorum, buckets: {b1: {n1: [127.0.0.1, 17001], n2: [127.0.0.1, 17002]}}}}\n", port)},
		{name: "a clock gone back still gives a higher epoch", edit: configText("", coords, "n1", "n2", "n9"),
			clock: time.Unix(1000, 0), want: "higher"},
		{name: "invalid reload keeps the served configuration", edit: strings.Replace(base, "    buckets:", "    read_repair: maybe\n    buckets:", 1), want: "invalid"},
		{name: "a reload that drops this coordinator is refused", edit: configText("", []coord{{"c2", port}}, "n1", "n2"), want: "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			clock := &fixedClock{now: time.Now()}
			s := newTestServer(t, dir, "c1", base, clock.Now)
			cfg0, epoch0 := s.Current()
			if got, want := epoch0, clock.Now().UnixMicro(); got != want {
				t.Fatalf("first epoch = %d, want the clock's %d", got, want)
			}
			if !tt.clock.IsZero() {
				clock.Set(tt.clock)
			} else {
				clock.Set(clock.Now().Add(time.Second))
			}
			writeFile(t, filepath.Join(dir, "c1.yaml"), tt.edit)
			if tt.restart {
				var err error
				s, err = NewServer(ServerOptions{ID: "c1", ConfigPath: filepath.Join(dir, "c1.yaml"),
					StateDir: filepath.Join(dir, "state", "c1"), Logger: testLogger(t), Wall: clock.Now})
				if err != nil {
					t.Fatalf("NewServer after the edit: %v", err)
				}
			} else if err := s.Reload(); err != nil && tt.want != "invalid" {
				t.Fatalf("Reload: %v", err)
			} else if err == nil && tt.want == "invalid" {
				t.Fatal("Reload of an invalid file: no error")
			} else if err != nil && strings.Contains(tt.edit, "maybe") {
				for _, want := range []string{"deployments.cluster.read_repair", `deployment "cluster"`} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("Reload error %q does not name %s", err, want)
					}
				}
			}
			cfg1, epoch1 := s.Current()
			switch tt.want {
			case "same":
				if epoch1 != epoch0 {
					t.Errorf("epoch %d became %d", epoch0, epoch1)
				}
			case "higher":
				if epoch1 <= epoch0 {
					t.Errorf("epoch %d became %d, want higher", epoch0, epoch1)
				}
			case "invalid":
				if epoch1 != epoch0 || cfg1 != cfg0 {
					t.Errorf("an invalid reload changed what is served: epoch %d -> %d", epoch0, epoch1)
				}
			}
			// The epoch served is the one persisted: a further restart keeps it.
			if tt.want != "invalid" {
				again, err := NewServer(ServerOptions{ID: "c1", ConfigPath: filepath.Join(dir, "c1.yaml"),
					StateDir: filepath.Join(dir, "state", "c1"), Wall: clock.Now})
				if err != nil {
					t.Fatal(err)
				}
				if _, e := again.Current(); e != epoch1 {
					t.Errorf("after a restart, epoch %d, want %d", e, epoch1)
				}
			}
		})
	}
}

func TestNewServerErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, configText("", []coord{{"c1", 4712}}, "n1"))
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, configText("", []coord{{"c1", 4712}}, "n1")+"    write_quorum: seven\n")
	tests := []struct {
		name  string
		opts  ServerOptions
		is    error
		wants []string
	}{
		{name: "id not in the file", opts: ServerOptions{ID: "c9", ConfigPath: good, StateDir: dir},
			is: ErrUnknownID, wants: []string{"c9", "c1", good}},
		{name: "invalid file names key and deployment", opts: ServerOptions{ID: "c1", ConfigPath: bad, StateDir: dir},
			wants: []string{"deployments.cluster", `deployment "cluster"`, bad}},
		{name: "missing file", opts: ServerOptions{ID: "c1", ConfigPath: filepath.Join(dir, "none.yaml"), StateDir: dir},
			is: os.ErrNotExist},
		{name: "no state dir", opts: ServerOptions{ID: "c1", ConfigPath: good}, wants: []string{"StateDir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewServer(tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %q is not %v", err, tt.is)
			}
			for _, w := range tt.wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDamagedStateStartsOver(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state", "c1")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(stateDir, stateFile), "{not json")
	s := newTestServer(t, dir, "c1", configText("", []coord{{"c1", 4712}}, "n1"), nil)
	if _, e := s.Current(); e <= 0 {
		t.Fatalf("epoch %d", e)
	}
	if _, err := readState(stateDir); err != nil {
		t.Fatalf("the state was not rewritten: %v", err)
	}
}

func TestConfigurationHTTP(t *testing.T) {
	dir := t.TempDir()
	s := newTestServer(t, dir, "c1", configText("", []coord{{"c1", 4712}}, "n1"), nil)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	cfg, epoch := s.Current()
	body := canonicalOf(t, cfg)
	tests := []struct {
		name      string
		method    string
		query     string
		path      string
		code      int
		ts        int64
		body      string
		minTime   time.Duration
		bodyMatch string
	}{
		{name: "plain GET", query: "", code: 200, ts: epoch, body: body},
		{name: "since older answers at once", query: fmt.Sprintf("?since=%d&wait=30s", epoch-1), code: 200, ts: epoch, body: body},
		{name: "since zero answers at once", query: "?since=0&wait=60s", code: 200, ts: epoch, body: body},
		{name: "since current without wait is not modified", query: fmt.Sprintf("?since=%d", epoch), code: 304, ts: epoch},
		{name: "since current waits then is not modified", query: fmt.Sprintf("?since=%d&wait=150ms", epoch), code: 304, ts: epoch, minTime: 150 * time.Millisecond},
		{name: "since in the future waits too", query: fmt.Sprintf("?since=%d&wait=50ms", epoch+1e9), code: 304, ts: epoch, minTime: 50 * time.Millisecond},
		{name: "malformed since", query: "?since=yesterday&wait=1s", code: 400, bodyMatch: "since"},
		{name: "negative since", query: "?since=-5", code: 400, bodyMatch: "since"},
		{name: "malformed wait", query: fmt.Sprintf("?since=%d&wait=soon", epoch), code: 400, bodyMatch: "wait"},
		{name: "wait without a unit", query: fmt.Sprintf("?since=%d&wait=30", epoch), code: 400, bodyMatch: "wait"},
		{name: "negative wait", query: fmt.Sprintf("?since=%d&wait=-1s", epoch), code: 400, bodyMatch: "wait"},
		{name: "health", path: "/health", code: 200, body: "ok\n"},
		{name: "metrics", path: "/metrics", code: 200, bodyMatch: "tako_config_epoch"},
		{name: "unknown path", path: "/configurations", code: 404},
		{name: "wrong method", method: http.MethodPost, code: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.path
			if path == "" {
				path = "/configuration"
			}
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequest(method, hs.URL+path+tt.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b := readAll(t, resp)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d (body %q)", resp.StatusCode, tt.code, b)
			}
			if tt.ts != 0 && resp.Header.Get("X-Timestamp") != fmt.Sprint(tt.ts) {
				t.Errorf("X-Timestamp %q, want %d", resp.Header.Get("X-Timestamp"), tt.ts)
			}
			if tt.body != "" && b != tt.body {
				t.Errorf("body %q, want %q", b, tt.body)
			}
			if tt.bodyMatch != "" && !strings.Contains(b, tt.bodyMatch) {
				t.Errorf("body %q does not contain %q", b, tt.bodyMatch)
			}
			if tt.code == 400 && strings.Count(strings.TrimSpace(b), "\n") != 0 {
				t.Errorf("400 body is not one line: %q", b)
			}
			if tt.code == 200 && path == "/configuration" && resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
			}
			if el := time.Since(start); el < tt.minTime {
				t.Errorf("answered after %v, want at least %v", el, tt.minTime)
			}
		})
	}
	// The requests above were counted (at least once each: net/http's
	// client sends a GET again when the kept-alive connection it chose
	// breaks before the answer, which a loaded machine can make happen).
	// A request is counted once its handler returned, which can be a
	// moment after its client read the answer.
	least := map[string]float64{
		`tako_coordinator_requests_total{code="304",path="/configuration"}`: 3,
		`tako_coordinator_requests_total{code="404",path="other"}`:          1,
	}
	var m string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, _, m = get(t, hs.Client(), hs.URL+"/metrics")
		short := ""
		for series, n := range least {
			if seriesValue(m, series) < n {
				short = series
			}
		}
		if short == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics: %s is %v, want at least %v:\n%s", short, seriesValue(m, short), least[short], m)
		}
	}
	for _, want := range []string{
		`tako_coordinator_longpolls_waiting 0`,
		`tako_coordinator_reloads_total{result="invalid"} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, m)
		}
	}
}

// readAll returns the body of resp.
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLongPollWokenByReload(t *testing.T) {
	dir := t.TempDir()
	ln, port := listen(t)
	coords := []coord{{"c1", port}}
	s := newTestServer(t, dir, "c1", configText("", coords, "n1", "n2"), nil)
	run(t, s, ln)
	_, epoch := s.Current()
	url := fmt.Sprintf("http://%s/configuration?since=%d&wait=10s", s.Addr(), epoch)

	type result struct {
		code int
		ts   int64
		at   time.Time
	}
	const waiters = 100
	results := make(chan result, waiters)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: waiters}}
	defer client.CloseIdleConnections()
	for range waiters {
		go func() {
			code, ts, _ := get(t, client, url)
			results <- result{code, ts, time.Now()}
		}()
	}
	waitUntil(t, 5*time.Second, "100 long-polls waiting", func() bool { return s.waiting.Load() == waiters })
	select {
	case r := <-results:
		t.Fatalf("a long-poll answered %d before any change", r.code)
	case <-time.After(50 * time.Millisecond):
	}

	writeFile(t, filepath.Join(dir, "c1.yaml"), configText("", coords, "n1", "n2", "n3"))
	reloaded := time.Now()
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	_, newEpoch := s.Current()
	var slowest time.Duration
	for range waiters {
		select {
		case r := <-results:
			if r.code != 200 || r.ts != newEpoch {
				t.Errorf("long-poll answered %d with epoch %d, want 200 with %d", r.code, r.ts, newEpoch)
			}
			slowest = max(slowest, r.at.Sub(reloaded))
		case <-time.After(5 * time.Second):
			t.Fatal("not every long-poll was answered after the reload")
		}
	}
	t.Logf("%d long-polls answered within %v of the reload", waiters, slowest)
	if slowest > 500*time.Millisecond {
		t.Errorf("the slowest long-poll took %v after the reload", slowest)
	}
	if n := s.waiting.Load(); n != 0 {
		t.Errorf("%d long-polls still counted as waiting", n)
	}
}

func TestShutdownAnswersLongPolls(t *testing.T) {
	dir := t.TempDir()
	ln, port := listen(t)
	s := newTestServer(t, dir, "c1", configText("", []coord{{"c1", port}}, "n1"), nil)
	stop := run(t, s, ln)
	_, epoch := s.Current()
	answered := make(chan int, 1)
	go func() {
		code, _, _ := get(t, http.DefaultClient, fmt.Sprintf("http://%s/configuration?since=%d&wait=60s", s.Addr(), epoch))
		answered <- code
	}()
	waitUntil(t, 5*time.Second, "the long-poll waiting", func() bool { return s.waiting.Load() == 1 })
	start := time.Now()
	stop()
	select {
	case code := <-answered:
		if code != http.StatusNotModified {
			t.Errorf("long-poll answered %d at shutdown, want 304", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the long-poll was not answered at shutdown")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("shutdown took %v", el)
	}
	if err := s.Run(context.Background()); !errors.Is(err, ErrRunTwice) {
		t.Errorf("second Run: %v, want ErrRunTwice", err)
	}
}

func TestRunAddressTaken(t *testing.T) {
	ln, port := listen(t)
	defer ln.Close()
	s := newTestServer(t, t.TempDir(), "c1", configText("", []coord{{"c1", port}}, "n1"), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", port)) {
		t.Fatalf("Run on a taken port: %v, want an error naming the address", err)
	}
}

func TestReloadConcurrentWithLongPolls(t *testing.T) {
	dir := t.TempDir()
	ln, port := listen(t)
	coords := []coord{{"c1", port}}
	s := newTestServer(t, dir, "c1", configText("", coords, "n0", "n1"), nil)
	run(t, s, ln)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range 8 {
		wg.Go(func() {
			var since int64
			for ctx.Err() == nil {
				code, ts, _ := get(t, http.DefaultClient, fmt.Sprintf("http://%s/configuration?since=%d&wait=1s", s.Addr(), since))
				if code == 200 {
					if ts <= since {
						t.Errorf("epoch went from %d to %d", since, ts)
					}
					since = ts
				}
			}
		})
	}
	// Each reload adds a mirror node, a change a reload accepts.
	nodes := []string{"n0", "n1"}
	for i := range 20 {
		nodes = append(nodes, fmt.Sprintf("n%d", i+2))
		writeFile(t, filepath.Join(dir, "c1.yaml"), configText("", coords, nodes...))
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
}

// seriesValue returns the value of series (name and labels, exactly as
// exposed) in the Prometheus text m; -1 when absent.
func seriesValue(m, series string) float64 {
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}
