package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/history"
	"github.com/takodb/tako/internal/sim"
)

// TestHotKeysAreLinearizable runs many clients on a few hot keys of a
// cluster of processes and checks the history with internal/history: for
// writes the cluster stamps, every key is a linearizable register, reads
// never go back in time, nothing acknowledged is lost, and no write answers
// 409 (CONTRACT.md, "Guarantees"; docs/contract-notes.md). 12 HTTP clients
// (each request to the proxy or a random node's HTTP port) and 2 Go clients
// (the binary protocol; one of them coordinates its own requests) share 4 keys for 10 s: 60% reads, 30% writes of
// unique values, 10% deletes, none with X-Timestamp. 2 more clients write
// 2 keys of their own with X-Timestamp, held only to what the contract
// promises them: the newest timestamp wins, reads do not go back in time.
func TestHotKeysAreLinearizable(t *testing.T) {
	const (
		httpClients, goClients, tsClients = 12, 2, 2
		duration                          = 10 * time.Second
	)
	hot := []string{"hot/0", "hot/1", "hot/2", "hot/3"}
	stamped := []string{"stamped/0", "stamped/1"}

	c := startCluster(t, [][]string{{"n1"}, {"n2"}, {"n3"}}, 2, "")
	entries := []string{c.base}
	for _, id := range []string{"n1", "n2", "n3"} {
		entries = append(entries, c.http[id])
	}
	hc := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: httpClients + tsClients},
	}
	// One Go client sends each request to a node, which coordinates it
	// (Options.Forward).
	gc := client.New(parsed(t, c.cfg), client.Options{Forward: true})
	defer gc.Close()
	// The other Go client coordinates its own requests (the
	// default): its history interleaves with that of the
	// requests the nodes coordinate, and is checked with it.
	gcc := client.New(parsed(t, c.cfg), client.Options{})
	defer gcc.Close()

	rec := &history.Recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	run := func(id int, keys []string, clientTS bool, do func(o *history.Op, rng *rand.Rand)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
			for seq := 0; ctx.Err() == nil; seq++ {
				o := history.Op{Client: id, Key: keys[rng.IntN(len(keys))], ClientTimestamp: clientTS}
				switch p := rng.IntN(10); {
				case p < 3:
					o.Kind, o.Value = history.Write, fmt.Sprintf("c%d-%d", id, seq)
				case p < 4:
					o.Kind = history.Delete
				}
				if o.Kind == history.Read {
					o.ClientTimestamp = false
				}
				do(&o, rng)
				rec.Add(o)
			}
		}()
	}
	id := 0
	for range httpClients {
		run(id, hot, false, func(o *history.Op, rng *rand.Rand) {
			httpOp(hc, entries[rng.IntN(len(entries))], o, 0)
		})
		id++
	}
	for i := range goClients {
		cl := gc
		if i%2 == 1 {
			cl = gcc
		}
		run(id, hot, false, func(o *history.Op, _ *rand.Rand) { goOp(cl, o) })
		id++
	}
	for range tsClients {
		run(id, stamped, true, func(o *history.Op, rng *rand.Rand) {
			// A timestamp of its own, up to 2 ms off the clock, so that
			// the two clients race and some writes lose.
			ts := time.Now().UnixMicro() + rng.Int64N(4000) - 2000
			httpOp(hc, entries[rng.IntN(len(entries))], o, ts)
		})
		id++
	}
	wg.Wait()

	// The final reads, through the proxy, once every client stopped.
	for i, key := range append(append([]string{}, hot...), stamped...) {
		o := history.Op{Client: 100 + i, Kind: history.Read, Key: key, Final: true}
		for attempt := 0; attempt < 5; attempt++ {
			httpOp(hc, c.base, &o, 0)
			if o.Outcome != history.Failed {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if o.Outcome == history.Failed {
			t.Errorf("the final read of %s failed: %s", key, o.Note)
		}
		rec.Add(o)
	}

	ops := rec.Ops()
	conflicts, writes := 0, 0
	for _, o := range ops {
		if o.Kind != history.Read && !o.ClientTimestamp {
			writes++
			if o.Outcome == history.LostRace {
				conflicts++
			}
		}
	}
	v := history.Check(ops)
	t.Logf("%v", v)
	if v.Acknowledged < 500 {
		t.Errorf("only %d writes and deletes were acknowledged: the workload did not run", v.Acknowledged)
	}
	if conflicts > 0 {
		t.Errorf("%d of %d writes and deletes without X-Timestamp answered 409", conflicts, writes)
	}
	if !v.OK() {
		t.Errorf("the history has %d anomalies (%d keys undecided): see the verdict above", v.Anomalies(), len(v.Unknown))
		if dir, err := os.MkdirTemp("", "tako-hotkeys-"); err == nil {
			paths, err := v.WriteVisualizations(dir)
			t.Logf("Porcupine's visualizations: %v %v", paths, err)
			if b, err := json.Marshal(ops); err == nil {
				os.WriteFile(filepath.Join(dir, "history.json"), b, 0o644)
				t.Logf("the history: %s", filepath.Join(dir, "history.json"))
			}
		}
	}
}

// httpOp sends o over HTTP to base and records its answer in o. A ts other
// than 0 is sent as X-Timestamp.
func httpOp(hc *http.Client, base string, o *history.Op, ts int64) {
	method := map[history.Kind]string{history.Read: "GET", history.Write: "POST", history.Delete: "DELETE"}[o.Kind]
	req, err := http.NewRequest(method, base+"/values/"+o.Key, strings.NewReader(o.Value))
	if err != nil {
		panic(err) // the URL is ours
	}
	if ts != 0 {
		req.Header.Set("X-Timestamp", strconv.FormatInt(ts, 10))
	}
	o.Note = base
	o.Start = time.Now()
	var code int
	var body []byte
	resp, err := hc.Do(req)
	if err == nil {
		code = resp.StatusCode
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		o.Timestamp, _ = strconv.ParseInt(resp.Header.Get("X-Timestamp"), 10, 64)
	}
	o.End = time.Now()
	switch {
	case err != nil:
		o.Outcome, o.Note = history.Failed, fmt.Sprintf("%s: %v", base, err)
	case o.Kind == history.Read && code == 200:
		o.Outcome, o.Value = history.OK, string(body)
	case o.Kind == history.Read && code == 404:
		o.Outcome = history.Absent
	case o.Kind != history.Read && (code == 200 || code == 204):
		o.Outcome = history.OK
	case o.Kind != history.Read && code == 409:
		o.Outcome = history.LostRace
	default:
		o.Outcome, o.Note = history.Failed, fmt.Sprintf("%s: %d %s", base, code, body)
	}
}

// goOp sends o through the Go client and records its answer in o.
func goOp(gc *client.Client, o *history.Op) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sim.Apply(ctx, gc, o)
	if o.Note != "" {
		o.Note = "go client: " + o.Note
	} else {
		o.Note = "go client"
	}
}
