package config

import (
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestExamples loads every file in examples/ and checks what it says.
func TestExamples(t *testing.T) {
	type want struct {
		active         string
		buckets, nodes int
		bucketsPerKey  int
		readRepair     bool
		replicas       int
		master         string
		firstHTTP      string
		firstBinary    string
	}
	wants := map[string]want{
		"standalone.yaml": {
			active: "standalone", buckets: 1, nodes: 1, bucketsPerKey: 1, readRepair: false, replicas: 1,
			firstHTTP: "localhost:5711", firstBinary: "localhost:4711",
		},
		"cluster.yaml": {
			active: "cluster", buckets: 5, nodes: 10, bucketsPerKey: 2, readRepair: true, replicas: 4, master: "c1",
			firstHTTP: "tako-node-01.domain.com:5711", firstBinary: "tako-node-01.domain.com:4711",
		},
		"bench.yaml": {
			active: "bench", buckets: 3, nodes: 3, bucketsPerKey: 2, readRepair: true, replicas: 2,
			firstHTTP: "127.0.0.1:5801", firstBinary: "127.0.0.1:4801",
		},
		"production.yaml": {
			active: "production", buckets: 3, nodes: 6, bucketsPerKey: 2, readRepair: true, replicas: 4, master: "c1",
			firstHTTP: "tako-node-01.example.com:5711", firstBinary: "tako-node-01.example.com:4711",
		},
		"local_cluster.yaml": {
			active: "local", buckets: 5, nodes: 10, bucketsPerKey: 2, readRepair: true, replicas: 4, master: "c1",
			firstHTTP: "127.0.0.1:5701", firstBinary: "127.0.0.1:4701",
		},
	}
	files, err := filepath.Glob(filepath.Join("..", "..", "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	more, err := filepath.Glob(filepath.Join("..", "..", "examples", "*", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, more...)
	if len(files) < len(wants) {
		t.Fatalf("found %d example files, want at least %d", len(files), len(wants))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			c, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, c)
			w, ok := wants[name]
			if !ok {
				t.Skip("no expectations for this file beyond the invariants")
			}
			d := c.Active
			nodes := c.Nodes()
			if d.Name != w.active || len(d.Buckets) != w.buckets || len(nodes) != w.nodes ||
				d.BucketsPerKey != w.bucketsPerKey || d.ReadRepair != w.readRepair || c.MasterCoordinator != w.master {
				t.Errorf("got active %q, %d buckets, %d nodes, buckets_per_key %d, read_repair %v, master %q; want %+v",
					d.Name, len(d.Buckets), len(nodes), d.BucketsPerKey, d.ReadRepair, c.MasterCoordinator, w)
			}
			if nodes[0].HTTPAddr() != w.firstHTTP || nodes[0].BinaryAddr() != w.firstBinary {
				t.Errorf("first node at %s and %s, want %s and %s",
					nodes[0].HTTPAddr(), nodes[0].BinaryAddr(), w.firstHTTP, w.firstBinary)
			}
			for _, key := range []string{"a", "b", "some/longer/key", ""} {
				if got := len(c.Replicas(nil, []byte(key))); got != w.replicas {
					t.Errorf("key %q has %d replicas, want %d", key, got, w.replicas)
				}
			}
			if d.MinReplicas() != w.replicas {
				t.Errorf("MinReplicas() = %d, want %d", d.MinReplicas(), w.replicas)
			}
		})
	}
}

// TestProductionExample checks the sections that examples/production.yaml
// is there to show: tls with the paths tako certs prints, auth with a token
// of each role, and limits that differ from the defaults (so that the file's
// values are read, not the defaults), and that its JSON, what coordinators
// serve and caches hold, keeps them.
func TestProductionExample(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "examples", "production.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	wantTLS := TLSFiles{CA: "/etc/tako/tls/ca.pem", Cert: "/etc/tako/tls/tako.pem", Key: "/etc/tako/tls/tako-key.pem"}
	if c.TLS == nil || !reflect.DeepEqual(*c.TLS, wantTLS) {
		t.Errorf("TLS = %+v, want %+v", c.TLS, wantTLS)
	}
	var roles []string
	for _, tok := range c.AuthTokens {
		roles = append(roles, tok.Name+"="+tok.Role.String())
	}
	if got, want := strings.Join(roles, " "), "processes=admin app=write monitoring=read"; got != want {
		t.Errorf("auth tokens %s, want %s", got, want)
	}
	if c.Auth == nil || len(c.Auth.List()) != 3 {
		t.Errorf("Auth holds %v, want the three tokens", c.Auth)
	}
	d := c.Active
	wantLimits := Limits{
		MaxConnections: 10000, MaxRequestsInFlight: 2048, MaxRequestsPerConnection: 256, MaxBytesInFlight: 256 << 20,
		HeaderTimeout: 10 * time.Second, BodyTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute,
	}
	if d.Limits != wantLimits {
		t.Errorf("limits %+v, want %+v", d.Limits, wantLimits)
	}
	if d.Limits == DefaultLimits {
		t.Error("limits are the defaults: the example should show values of its own")
	}
	if d.MaxValueSize != 16<<20 || d.RepairBandwidth != 128<<20 || d.BackgroundRepairInterval != 24*time.Hour || len(c.Coordinators) != 2 {
		t.Errorf("max_value_size %d, repair_bandwidth %d, background_repair_interval %v, %d coordinators; want 16 MiB, 128 MiB/s, 24h, 2",
			d.MaxValueSize, d.RepairBandwidth, d.BackgroundRepairInterval, len(c.Coordinators))
	}
	j, err := c.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(j)
	if err != nil {
		t.Fatalf("parsing the example's JSON: %v", err)
	}
	if !reflect.DeepEqual(back.TLS, c.TLS) || !reflect.DeepEqual(back.AuthTokens, c.AuthTokens) || back.Active.Limits != d.Limits {
		t.Errorf("the JSON lost a section: tls %+v, tokens %v, limits %+v", back.TLS, back.AuthTokens, back.Active.Limits)
	}
}

// TestLocalCluster checks the ports of the local cluster: node nK serves
// HTTP on 5700+K and its binary protocol on 4700+K, the coordinator c1 on
// 4700, all on 127.0.0.1, two nodes to a bucket.
func TestLocalCluster(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "examples", "local_cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Coordinators) != 1 || c.Coordinators[0].Addr() != "127.0.0.1:4700" || c.Coordinators[0].ID != "c1" {
		t.Errorf("Coordinators = %+v, want c1 at 127.0.0.1:4700", c.Coordinators)
	}
	for k := 1; k <= 10; k++ {
		id := "n" + strconv.Itoa(k)
		n, _, ok := c.Node(id)
		if !ok {
			t.Fatalf("no node %s", id)
		}
		want := Node{ID: id, Bucket: "b" + strconv.Itoa((k+1)/2), Host: "127.0.0.1", HTTPPort: 5700 + k, BinaryPort: 4700 + k}
		if n != want {
			t.Errorf("Node(%s) = %+v, want %+v", id, n, want)
		}
	}
}
