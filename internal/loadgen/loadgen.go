// Package loadgen drives a Tako cluster with concurrent clients and measures
// what it gets: operations per second and latency percentiles per
// operation. It is the engine of tako-bench.
//
// A Target performs one operation; the HTTP target speaks the HTTP API (to a
// proxy or a node) over HTTP or HTTPS, the client target uses the Go client
// straight to the nodes. Run starts Clients goroutines that each loop over
// random keys of the keyspace for Duration, and returns one Result per
// operation kind.
package loadgen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/takodb/tako/client"
)

// Target performs single operations against a cluster.
type Target interface {
	// Get reads key; a missing key is not an error.
	Get(ctx context.Context, key string) error
	// Put writes value under key.
	Put(ctx context.Context, key string, value []byte) error
}

// Options configure a run.
type Options struct {
	Clients   int           // concurrent clients; default 16
	Duration  time.Duration // how long to run; default 10 s
	Keys      int           // size of the keyspace; default 100,000
	ValueSize int           // bytes per value; default 100
	// ReadFraction is the share of operations that are reads: 1 for GET
	// only, 0 for POST only, 0.9 for the 90/10 mix.
	ReadFraction float64
	// KeyPrefix is put before every key number; default "bench/".
	KeyPrefix string
}

func (o *Options) defaults() {
	if o.Clients == 0 {
		o.Clients = 16
	}
	if o.Duration == 0 {
		o.Duration = 10 * time.Second
	}
	if o.Keys == 0 {
		o.Keys = 100_000
	}
	if o.ValueSize == 0 {
		o.ValueSize = 100
	}
	if o.KeyPrefix == "" {
		o.KeyPrefix = "bench/"
	}
}

// Result is what one kind of operation did during a run.
type Result struct {
	Op             string
	Ops, Errors    int
	Duration       time.Duration
	P50, P99, P999 time.Duration
	FirstError     error
}

// OpsPerSecond is the throughput of successful operations.
func (r Result) OpsPerSecond() float64 { return float64(r.Ops) / r.Duration.Seconds() }

// String formats the result as one line.
func (r Result) String() string {
	s := fmt.Sprintf("%-4s %9.0f ops/s  p50 %8s  p99 %8s  p99.9 %8s  ops %d  errors %d",
		r.Op, r.OpsPerSecond(), round(r.P50), round(r.P99), round(r.P999), r.Ops, r.Errors)
	if r.FirstError != nil {
		s += "  first error: " + r.FirstError.Error()
	}
	return s
}

func round(d time.Duration) time.Duration {
	switch {
	case d > time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

func (o Options) key(i int) string { return o.KeyPrefix + strconv.Itoa(i) }

// Prefill writes every key of the keyspace once, with Clients writers.
func Prefill(ctx context.Context, t Target, o Options) error {
	o.defaults()
	value := bytes.Repeat([]byte("p"), o.ValueSize)
	next := make(chan int)
	errs := make(chan error, o.Clients)
	var wg sync.WaitGroup
	for range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := t.Put(ctx, o.key(i), value); err != nil {
					errs <- fmt.Errorf("prefilling %s: %w", o.key(i), err)
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := range o.Keys {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return err
}

type sample struct {
	read bool
	d    time.Duration
	err  error
}

// Run drives t with o.Clients clients for o.Duration and returns the
// results for reads and writes (those that ran).
func Run(ctx context.Context, t Target, o Options) []Result {
	o.defaults()
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	perClient := make([][]sample, o.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range o.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			value := bytes.Repeat([]byte{byte('a' + c%26)}, o.ValueSize)
			samples := make([]sample, 0, 1<<14)
			for ctx.Err() == nil {
				key := o.key(r.IntN(o.Keys))
				read := r.Float64() < o.ReadFraction
				t0 := time.Now()
				var err error
				if read {
					err = t.Get(ctx, key)
				} else {
					err = t.Put(ctx, key, value)
				}
				if err != nil && ctx.Err() != nil {
					break // cut off by the end of the run
				}
				samples = append(samples, sample{read: read, d: time.Since(t0), err: err})
			}
			perClient[c] = samples
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	var results []Result
	for _, read := range []bool{true, false} {
		res := Result{Op: "PUT", Duration: elapsed}
		if read {
			res.Op = "GET"
		}
		var lat []time.Duration
		for _, samples := range perClient {
			for _, s := range samples {
				if s.read != read {
					continue
				}
				if s.err != nil {
					res.Errors++
					if res.FirstError == nil {
						res.FirstError = s.err
					}
					continue
				}
				lat = append(lat, s.d)
			}
		}
		if len(lat) == 0 && res.Errors == 0 {
			continue
		}
		slices.Sort(lat)
		res.Ops = len(lat)
		res.P50, res.P99, res.P999 = percentile(lat, 0.50), percentile(lat, 0.99), percentile(lat, 0.999)
		results = append(results, res)
	}
	return results
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)) * p)
	return sorted[min(i, len(sorted)-1)]
}

// HTTPTarget speaks the HTTP API at a base URL such as http://localhost:8080
// or https://localhost:8080.
type HTTPTarget struct {
	Base   string
	Client *http.Client
}

// NewHTTPTarget returns a target with a keep-alive client sized for
// clients. An https base is verified with the roots of tlsConfig, or with
// the system's when tlsConfig is nil. Over HTTPS as over HTTP the client
// speaks HTTP/1.1 on up to 2 × clients kept-alive connections, so that the
// two compare: TLS adds a handshake per connection and the records'
// encryption, nothing else.
func NewHTTPTarget(base string, clients int, tlsConfig *tls.Config) *HTTPTarget {
	if tlsConfig == nil {
		tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	var http1 http.Protocols
	http1.SetHTTP1(true)
	tr := &http.Transport{
		MaxIdleConns: clients * 2, MaxIdleConnsPerHost: clients * 2, MaxConnsPerHost: clients * 2,
		TLSClientConfig: tlsConfig.Clone(), Protocols: &http1,
	}
	return &HTTPTarget{Base: base, Client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (h *HTTPTarget) do(ctx context.Context, method, key string, body []byte, ok func(int) bool) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.Base+"/values/"+key, rd)
	if err != nil {
		return err
	}
	resp, err := h.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if !ok(resp.StatusCode) {
		return fmt.Errorf("%s %s: %s", method, key, resp.Status)
	}
	return nil
}

// Get implements Target.
func (h *HTTPTarget) Get(ctx context.Context, key string) error {
	return h.do(ctx, "GET", key, nil, func(c int) bool { return c == 200 || c == 404 })
}

// Put implements Target.
func (h *HTTPTarget) Put(ctx context.Context, key string, value []byte) error {
	return h.do(ctx, "POST", key, value, func(c int) bool { return c == 200 || c == 409 })
}

// ClientTarget uses the Go client, straight to the nodes.
type ClientTarget struct{ C *client.Client }

// Get implements Target.
func (c ClientTarget) Get(ctx context.Context, key string) error {
	_, err := c.C.Get(ctx, []byte(key))
	if errors.Is(err, client.ErrNotFound) {
		return nil
	}
	return err
}

// Put implements Target.
func (c ClientTarget) Put(ctx context.Context, key string, value []byte) error {
	_, err := c.C.Put(ctx, []byte(key), value)
	return err
}
