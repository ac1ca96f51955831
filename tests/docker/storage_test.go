package docker

import (
	"fmt"
	"io/fs"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// volumePath returns where the Docker engine keeps volume on this host
// (the engine runs here, so the test reaches the files of a stopped
// node's store).
func (c *compose) volumePath(t *testing.T, volume string) string {
	t.Helper()
	return strings.TrimSpace(run(t, nil, "docker", "volume", "inspect", "-f", "{{.Mountpoint}}", c.project+"_"+volume))
}

// diskFills moves node id onto a size-limited volume (a tmpfs of 320 MiB;
// the node starts empty and refills its ranges), then fills that volume to
// the last byte with a file of its own, as a runaway log would: the node
// must give back its ballast, keep serving reads, refuse writes with a
// reason, and never crash; once the file is deleted it takes writes again.
// The node stays on that volume for the rest of the suite.
func diskFills(c *compose, id string) fault {
	service := nodeService(id)
	return fault{name: "a node's disk fills up", together: []string{id}, inject: func(t *testing.T, d *downtime) {
		since := time.Now().Format(time.RFC3339)
		up := d.down(service)
		// Next to the suite's override: every later compose command of
		// the test needs it, after this subtest's own directory is gone.
		override := filepath.Join(filepath.Dir(c.cfgPath), "small-volume.yml")
		yaml := fmt.Sprintf("version: \"3\"\nservices:\n  %s:\n    volumes:\n      - %ssmall:/var/tako\nvolumes:\n  %ssmall:\n    driver_opts: {type: tmpfs, device: tmpfs, o: size=320m}\n", service, id, id)
		if err := os.WriteFile(override, []byte(yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		c.files = append(c.files, override) // every later compose command keeps the small volume
		// Removed first: recreating would keep the container's volume.
		c.compose(t, "rm", "-s", "-f", service)
		c.compose(t, "up", "-d", "--no-deps", service)
		c.waitHealthy(t, service)
		up()
		c.waitRecovered(t, service, since)

		filler := filepath.Join(c.volumePath(t, id+"small"), "runaway.log")
		f, err := os.Create(filler)
		if err != nil {
			t.Fatal(err)
		}
		block := make([]byte, 1<<20)
		written := 0
		for {
			n, err := f.Write(block)
			written += n
			if err != nil {
				break
			}
		}
		f.Close()
		t.Logf("filled %s's volume with %d MiB: 0 bytes free", service, written>>20)
		c.waitFor(t, service+" to give back its ballast", 20*time.Second, func() bool {
			return strings.Contains(run(t, nil, "docker", "logs", "--since", since, c.container(service)), "deleted the ballast")
		})
		time.Sleep(10 * time.Second)
		// Writes to the full node are acknowledged by the other replicas
		// (the workload checks it); the node refuses its own share and
		// says so, and serves.
		if code, _, body := c.doAt(service, "GET", "/health", nil); code != 200 {
			t.Errorf("%s on a full disk: /health %d %s", service, code, body)
		}
		if low := c.metric(t, service, "tako_store_low_space"); low != 1 {
			t.Errorf("%s on a full disk: tako_store_low_space %v, want 1", service, low)
		}
		refused := c.metric(t, service, "tako_store_writes_refused_total")
		t.Logf("%s refused %v writes on its full disk", service, refused)
		if refused < 1 {
			t.Errorf("%s on a full disk refused no write", service)
		}
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		c.waitFor(t, service+" to make its ballast again", 30*time.Second, func() bool {
			logs := run(t, nil, "docker", "logs", "--since", since, c.container(service))
			return strings.Count(logs, "made the ballast") >= 2
		})
		c.noCrash(t, service, since)
		if low := c.metric(t, service, "tako_store_low_space"); low != 0 {
			t.Errorf("%s with space back: tako_store_low_space %v, want 0", service, low)
		}
	}}
}

// metric returns the value of a metric without labels on service's
// /metrics page, or -1.
func (c *compose) metric(t *testing.T, service, name string) float64 {
	code, _, body := c.doAt(service, "GET", "/metrics", nil)
	if code != 200 {
		return -1
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return -1
}

// corruptSST writes keys of its own through the proxy, restarts node id so
// that they are in its sorted tables, stops it, overwrites 4 KiB in the
// middle of each of its tables, and starts it: the node must never answer
// wrong bytes (a damaged block is an error of the read, and the other
// replicas answer), say which file is damaged, and, once the operator did
// what its log says (the store moved aside: here the volume removed),
// refill everything.
func corruptSST(c *compose, id string) fault {
	service := nodeService(id)
	return fault{name: "an SST corrupted on a stopped node", together: []string{id}, inject: func(t *testing.T, d *downtime) {
		const n, writers = 1000, 8
		// Values that do not compress: the tables must be large enough
		// to hold a data block in their middle.
		value := func(i int) string {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			b := make([]byte, 512)
			for j := range b {
				b[j] = "0123456789abcdef"[rng.IntN(16)]
			}
			return fmt.Sprintf("sst-%d-%s", i, b)
		}
		written := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := w; i < n; i += writers {
					key := fmt.Sprintf("sst/%d", i)
					if code, _, _ := c.do("POST", "/values/"+key, []byte(value(i))); code == 200 {
						mu.Lock()
						written[key] = value(i)
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		up := d.down(service)
		since := time.Now().Format(time.RFC3339)
		run(t, nil, "docker", "restart", "-t", "10", c.container(service)) // the WAL replayed into a table
		c.waitHealthy(t, service)
		run(t, nil, "docker", "stop", "-t", "10", c.container(service))
		dir := c.volumePath(t, id)
		var tables []string
		filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err == nil && strings.HasSuffix(path, ".sst") {
				tables = append(tables, path)
			}
			return nil
		})
		corrupted := 0
		rng := rand.New(rand.NewPCG(1, 2))
		for _, p := range tables {
			st, err := os.Stat(p)
			if err != nil || st.Size() < 64<<10 {
				continue
			}
			garbage := make([]byte, 4096)
			for i := range garbage {
				garbage[i] = byte(rng.IntN(256))
			}
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(garbage, st.Size()/3)
			f.Close()
			t.Logf("overwrote 4 KiB at offset %d of %s (%d bytes)", st.Size()/3, filepath.Base(p), st.Size())
			corrupted++
		}
		if corrupted == 0 {
			t.Fatalf("no sorted table of 64 KiB or more in %s's store (%d tables)", service, len(tables))
		}
		// The node reads every record when it opens (it sums its
		// ranges' digests), so it finds the damage then, and refuses to
		// start on it, saying what to do: an exit with the reason, no
		// stack trace, and no wrong answer ever served.
		run(t, nil, "docker", "start", c.container(service))
		c.waitFor(t, service+" to refuse to start on its damaged store", 30*time.Second, func() bool {
			return strings.TrimSpace(run(t, nil, "docker", "inspect", "-f", "{{.State.Status}}", c.container(service))) == "exited"
		})
		code := strings.TrimSpace(run(t, nil, "docker", "inspect", "-f", "{{.State.ExitCode}}", c.container(service)))
		logs := run(t, nil, "docker", "logs", "--since", since, c.container(service))
		t.Logf("%s exited with status %s: %s", service, code, lineWith(logs, "store: damaged:"))
		if code == "0" || !strings.Contains(logs, "store: damaged:") || !strings.Contains(logs, "Move ") {
			t.Errorf("%s on a damaged store: exit status %s, want a refusal naming the file and what to do:\n%s", service, code, tail(logs, 5))
		}
		c.noCrash(t, service, since)
		// Meanwhile the other replicas serve every key.
		entries := []string{"tako-proxy"}
		var wrong, failed atomic.Int64
		keys := slices.Collect(maps.Keys(written))
		for w := range writers {
			wg.Go(func() {
				for i := w; i < len(keys); i += writers {
					key, want := keys[i], written[keys[i]]
					for _, entry := range entries {
						code, _, body := c.doAt(entry, "GET", "/values/"+key, nil)
						switch {
						case code == 200 && string(body) == want:
						case code == 200 || code == 404:
							if wrong.Add(1) <= 3 {
								t.Errorf("%s via %s: %d %.40q, want %.40q", key, entry, code, body, want)
							}
						default:
							failed.Add(1)
						}
					}
				}
			})
		}
		wg.Wait()
		t.Logf("read back %d keys through the proxy while %s is down: %d wrong, %d failed", len(written), service, wrong.Load(), failed.Load())
		if wrong.Load() > 0 || failed.Load() > 0 {
			t.Errorf("%d reads answered wrong, %d failed, of keys written before the corruption", wrong.Load(), failed.Load())
		}
		// What the log says to do: move the store aside and start again.
		since = c.emptyStore(t, id)
		up()
		c.waitRecovered(t, service, since)
		for key, want := range written {
			if code, _, body := c.doAt(service, "GET", "/values/"+key, nil); code != 200 || string(body) != want {
				t.Errorf("%s via %s after its refill: %d %q", key, service, code, body)
				break
			}
		}
	}}
}
