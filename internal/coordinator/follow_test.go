package coordinator

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

func TestFollowerFollowsMaster(t *testing.T) {
	dir := t.TempDir()
	mln, mport := listen(t)
	fln, fport := listen(t)
	coords := []coord{{"m", mport}, {"f", fport}}
	text := configText("m", coords, "n1", "n2")
	master := newTestServer(t, dir, "m", text, nil)
	follower := newTestServer(t, dir, "f", text, nil)
	run(t, master, mln)
	stopFollower := run(t, follower, fln)

	// Editing and reloading only the master's file is enough. (Each change
	// adds a mirror node: one that keeps a write quorum of every key's
	// replicas, which a reload accepts.)
	writeFile(t, filepath.Join(dir, "m.yaml"), configText("m", coords, "n1", "n2", "n3"))
	reloaded := time.Now()
	if err := master.Reload(); err != nil {
		t.Fatal(err)
	}
	mcfg, mepoch := master.Current()
	waitUntil(t, time.Second, "the follower serving the master's epoch", func() bool {
		_, e := follower.Current()
		return e == mepoch
	})
	t.Logf("the follower adopted the master's configuration %v after the master's reload", time.Since(reloaded))
	code, ts, body := get(t, http.DefaultClient, "http://"+follower.Addr()+"/configuration")
	if code != 200 || ts != mepoch || body != canonicalOf(t, mcfg) {
		t.Fatalf("the follower answers %d, epoch %d, %s; want 200, %d, %s", code, ts, body, mepoch, canonicalOf(t, mcfg))
	}

	// A reload of the follower's own, unchanged file changes nothing.
	if err := follower.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, e := follower.Current(); e != mepoch {
		t.Fatalf("after reloading its unchanged file the follower serves epoch %d, want %d", e, mepoch)
	}

	// A restart with the same stale file neither regresses nor numbers the
	// stale file anew.
	stopFollower()
	restarted, err := NewServer(ServerOptions{ID: "f", ConfigPath: filepath.Join(dir, "f.yaml"),
		StateDir: filepath.Join(dir, "state", "f"), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	cfg, e := restarted.Current()
	if e != mepoch || canonicalOf(t, cfg) != canonicalOf(t, mcfg) {
		t.Fatalf("after a restart the follower serves epoch %d, want the master's %d", e, mepoch)
	}

	// A local edit of the follower's file still works, and gets a higher
	// epoch than the master's.
	writeFile(t, filepath.Join(dir, "f.yaml"), configText("m", coords, "n1", "n2", "n3", "n4"))
	if err := restarted.Reload(); err != nil {
		t.Fatal(err)
	}
	cfg, e = restarted.Current()
	if _, _, ok := cfg.Node("n4"); !ok || e <= mepoch {
		t.Fatalf("after a local reload the follower serves epoch %d (master %d), n4 named: %v", e, mepoch, ok)
	}
}

func TestFollowerWaitsForMaster(t *testing.T) {
	dir := t.TempDir()
	mln, mport := listen(t)
	fln, fport := listen(t)
	coords := []coord{{"m", mport}, {"f", fport}}
	mln.Close() // the master is down
	follower := newTestServer(t, dir, "f", configText("m", coords, "n1"), nil)
	run(t, follower, fln)
	time.Sleep(300 * time.Millisecond) // a few failed attempts

	// The master comes up later, with a newer configuration.
	mln, err := net.Listen("tcp", mln.Addr().String())
	if err != nil {
		t.Skipf("the master's port was taken meanwhile: %v", err)
	}
	master := newTestServer(t, dir, "m", configText("m", coords, "n1", "n2"), nil)
	run(t, master, mln)
	_, mepoch := master.Current()
	waitUntil(t, 6*time.Second, "the follower serving the master's epoch", func() bool {
		_, e := follower.Current()
		return e == mepoch
	})
}

func TestMasterDoesNotFollow(t *testing.T) {
	tests := []struct {
		name   string
		master string
		id     string
		want   bool
	}{
		{name: "no master", master: "", id: "f", want: false},
		{name: "this is the master", master: "m", id: "m", want: false},
		{name: "another is the master", master: "m", id: "f", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newTestServer(t, dir, tt.id, configText(tt.master, []coord{{"m", 4712}, {"f", 4713}}, "n1"), nil)
			cfg, _ := s.Current()
			addr, ok := masterAddr(cfg, tt.id)
			if ok != tt.want {
				t.Fatalf("masterAddr = %q, %v; want %v", addr, ok, tt.want)
			}
			if ok && addr != fmt.Sprintf("127.0.0.1:%d", 4712) {
				t.Errorf("masterAddr = %q", addr)
			}
		})
	}
}

func TestFollowerIgnoresInvalidMaster(t *testing.T) {
	dir := t.TempDir()
	fake, requests := fakeCoordinator(t, time.Now().Add(time.Hour).UnixMicro(), `{"active_deployment":"nowhere"}`, false)
	mport := fake.Listener.Addr().(*net.TCPAddr).Port
	fln, fport := listen(t)
	follower := newTestServer(t, dir, "f", configText("m", []coord{{"m", mport}, {"f", fport}}, "n1"), nil)
	cfg0, epoch0 := follower.Current()
	run(t, follower, fln)
	waitUntil(t, 2*time.Second, "the follower asking the master", func() bool { return requests.Load() >= 1 })
	time.Sleep(300 * time.Millisecond)
	if cfg, e := follower.Current(); cfg != cfg0 || e != epoch0 {
		t.Fatalf("the follower adopted an invalid configuration: epoch %d -> %d", epoch0, e)
	}
	if n := requests.Load(); n > 3 {
		t.Errorf("the follower asked the master %d times in 300 ms", n)
	}
}
