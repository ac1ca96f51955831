package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/takodb/tako/internal/httpapi"
)

// The keys that expire: every fault's workload also runs ttlClients
// clients on ttlKeys keys of their own, which write values that expire
// within maxTTLAhead (half with X-TTL: 1 or 2, half with X-Expires-At), delete
// now and then, and read, each through the proxy or a node chosen at
// random. They are kept out of the main history (a key read absent after
// its acknowledged write is not lost when the write expired); ttlCheck
// judges them instead.
const (
	ttlClients, ttlKeys = 2, 8
	maxTTLAhead         = 2 * time.Second
)

// ttlOp is one operation on a key that expires.
type ttlOp struct {
	key, entry string
	read       bool
	start, end time.Time
	code       int
	expiresAt  int64 // X-Expires-At of the answer; 0 when it had none
}

// ttlHistory collects the operations of the ttl clients.
type ttlHistory struct {
	mu  sync.Mutex
	ops []ttlOp
}

// startTTLClients starts the clients of the keys that expire, on wg, until
// ctx ends; entries are the entries they send to at random.
func startTTLClients(ctx context.Context, wg *sync.WaitGroup, c *compose, keys, entries []string) *ttlHistory {
	h := &ttlHistory{}
	for id := range ttlClients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(1000+id), uint64(time.Now().UnixNano())))
			for seq := 0; ctx.Err() == nil; seq++ {
				o := ttlOp{key: keys[rng.IntN(len(keys))], entry: entries[rng.IntN(len(entries))]}
				method, hdr, body := "GET", http.Header{}, []byte(nil)
				switch p := rng.IntN(10); {
				case p < 4:
					method, body = "POST", fmt.Appendf(nil, "t%d-%d", id, seq)
					if rng.IntN(2) == 0 {
						hdr.Set("X-TTL", strconv.Itoa(1+rng.IntN(int(maxTTLAhead/time.Second))))
					} else {
						at := time.Now().Add(500*time.Millisecond + rand.N(maxTTLAhead-500*time.Millisecond))
						hdr.Set("X-Expires-At", strconv.FormatInt(at.UnixMicro(), 10))
					}
				case p < 5:
					method = "DELETE"
				default:
					o.read = true
				}
				o.start = time.Now()
				code, got, _ := c.doAtHeaders(o.entry, method, "/values/"+o.key, body, hdr)
				o.end, o.code = time.Now(), code
				if got != nil {
					o.expiresAt, _ = strconv.ParseInt(got.Get("X-Expires-At"), 10, 64)
				}
				h.mu.Lock()
				h.ops = append(h.ops, o)
				h.mu.Unlock()
			}
		})
	}
	return h
}

// ttlCheck checks the keys that expire once the workload ended (at end):
//   - no read that began after a value's expiry, plus the clock error of
//     the process that judged it (clockBehind: how far a node's clock ran
//     behind during the fault; the proxy's and the other nodes' clocks
//     are the host's), returned that value, and every value read carries
//     its expiry;
//   - once every value written has expired (and the fault's clocks are
//     right again), every key reads absent through the proxy and through
//     every node, and no replica holds a value that does not expire or
//     expires later (nothing came back through repair, restarts, a lost
//     disk's refill or a migration).
func ttlCheck(t *testing.T, c *compose, f fault, h *ttlHistory, keys []string, end time.Time) {
	t.Helper()
	h.mu.Lock()
	ops := h.ops
	h.mu.Unlock()
	var writes, acked, refused, reads, values, late int
	for _, o := range ops {
		switch {
		case !o.read:
			writes++
			if o.code/100 == 2 {
				acked++
			} else if o.code == 400 {
				refused++ // an X-Expires-At already past by a clock ahead
			}
		case o.code == 200:
			reads++
			values++
			if o.expiresAt == 0 {
				t.Errorf("%s: a read of %s through %s returned a value without X-Expires-At; every value of the key expires", f.name, o.key, o.entry)
				continue
			}
			bound := o.expiresAt + f.clockBehind[o.entry].Microseconds()
			if o.start.UnixMicro() > bound {
				late++
				if late <= 3 {
					t.Errorf("%s: a read of %s through %s began %v after the value's expiry (allowed: %v) and returned it",
						f.name, o.key, o.entry, time.Duration(o.start.UnixMicro()-o.expiresAt)*time.Microsecond, f.clockBehind[o.entry])
				}
			}
		default:
			reads++
		}
	}
	t.Logf("%s: keys that expire: %d writes (%d acknowledged, %d refused), %d reads (%d returned a value), %d returned an expired value",
		f.name, writes, acked, refused, reads, values, late)
	if acked < 20 || values < 10 {
		t.Errorf("%s: the keys that expire saw too little (%d acknowledged writes, %d values read): nothing was checked", f.name, acked, values)
	}

	// Every write was sent before end; the latest expiry any node can
	// have given is end + maxTTLAhead + the clock ahead.
	var ahead time.Duration
	for _, d := range f.clockAhead {
		ahead = max(ahead, d)
	}
	time.Sleep(time.Until(end.Add(maxTTLAhead + ahead + 100*time.Millisecond)))
	now := time.Now().UnixMicro()
	entries := append([]string{"tako-proxy"}, nodeServices()...)
	unanswered := map[string]int{} // entry → reads that got no 200 or 404
	for _, key := range keys {
		for _, entry := range entries {
			// A value served is a failure at once; no answer, or a
			// 5xx (a node still recovering after the fault, or no
			// longer in the configuration), is tried again (once an
			// entry gave up on a key, not for the next keys), then
			// counted: it serves nothing.
			code, hdr, body := c.doAt(entry, "GET", "/values/"+key, nil)
			for try := 0; try < 3 && unanswered[entry] == 0 && code != 200 && code != 404; try++ {
				time.Sleep(time.Second)
				code, hdr, body = c.doAt(entry, "GET", "/values/"+key, nil)
			}
			switch code {
			case 404:
			case 200:
				t.Errorf("%s: %s read through %s after every expiry: %d %q (X-Expires-At %q); want 404",
					f.name, key, entry, code, strings.TrimSpace(string(body)), hdr.Get("X-Expires-At"))
			default:
				unanswered[entry]++
			}
		}
		code, _, body := c.do("GET", "/where/"+key, nil)
		if code != 200 {
			t.Errorf("%s: GET /where/%s: %d %s", f.name, key, code, body)
			continue
		}
		var p httpapi.Placement
		if err := json.Unmarshal(body, &p); err != nil {
			t.Errorf("%s: GET /where/%s: %v", f.name, key, err)
			continue
		}
		for _, d := range p.Deployments {
			for _, b := range d.Buckets {
				for _, n := range b.Nodes {
					if n.Found && !n.Deleted && (n.ExpiresAt == 0 || n.ExpiresAt > now) {
						t.Errorf("%s: replica %s of %s holds a value that expires at %d, after every expiry (%d): it came back",
							f.name, n.ID, key, n.ExpiresAt, now)
					}
				}
			}
		}
	}
	if len(unanswered) > 0 {
		t.Logf("%s: reads of the keys that expire that got neither 200 nor 404 after every expiry, by entry: %v", f.name, unanswered)
	}
}

// doAtHeaders is doAt with more request headers.
func (c *compose) doAtHeaders(entry, method, path string, body []byte, hdr http.Header) (int, http.Header, []byte) {
	base := c.base
	if entry != "tako-proxy" {
		var err error
		if base, err = c.nodeURL(entry); err != nil {
			return 0, nil, nil
		}
	}
	return requestWith(c.client(entry), method, base+path, body, hdr)
}
