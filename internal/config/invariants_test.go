package config

import (
	"slices"
	"testing"
)

// checkInvariants checks what every Config that Parse returns must satisfy.
func checkInvariants(t testing.TB, c *Config) {
	t.Helper()
	if c.Active == nil || c.Deployments[c.Active.Name] != c.Active {
		t.Fatalf("Active %v is not one of the deployments", c.Active)
	}
	if c.Target != nil && (c.Target == c.Active || c.Deployments[c.Target.Name] != c.Target) {
		t.Fatalf("Target %q is the active deployment or not one of the deployments", c.Target.Name)
	}
	if c.MasterCoordinator != "" && !slices.ContainsFunc(c.Coordinators, func(co Coordinator) bool {
		return co.ID == c.MasterCoordinator
	}) {
		t.Errorf("MasterCoordinator %q is not a coordinator", c.MasterCoordinator)
	}
	for _, co := range c.Coordinators {
		if !validID(co.ID) || co.Host == "" || co.Port < 1 || co.Port > 65535 {
			t.Errorf("bad coordinator %+v", co)
		}
	}
	for name, d := range c.Deployments {
		checkDeployment(t, name, d)
	}
	if c.TLS != nil {
		if c.TLS.CA == "" || c.TLS.Cert == "" || c.TLS.Key == "" {
			t.Errorf("tls section with an empty path: %+v", c.TLS)
		}
		for role, kp := range c.TLS.Roles {
			if !slices.Contains(TLSRoles, role) || kp.Cert == "" || kp.Key == "" {
				t.Errorf("tls role %q: %+v", role, kp)
			}
		}
	}

	running := c.Nodes()
	seen := make(map[string]bool)
	for _, n := range running {
		if seen[n.ID] {
			t.Errorf("Nodes() lists %q twice", n.ID)
		}
		seen[n.ID] = true
		if _, d, ok := c.Node(n.ID); !ok || (d != c.Active && d != c.Target) {
			t.Errorf("Node(%q) = %v, %v; want it in the active or target deployment", n.ID, d, ok)
		}
	}
	for _, key := range []string{"", "a", "key", "\x00\xff", "a/b/c"} {
		all := c.Replicas(nil, []byte(key))
		active := c.Active.Replicas(nil, []byte(key))
		if !slices.Equal(all[:len(active)], active) {
			t.Errorf("Replicas(%q) = %v does not start with the active replicas %v", key, all, active)
		}
		ids := make(map[string]bool)
		for _, n := range all {
			if ids[n.ID] {
				t.Errorf("Replicas(%q) lists %q twice", key, n.ID)
			}
			ids[n.ID] = true
			if !seen[n.ID] {
				t.Errorf("Replicas(%q) lists %q, which Nodes() does not", key, n.ID)
			}
		}
		if c.Target != nil {
			for _, n := range c.Target.Replicas(nil, []byte(key)) {
				if !ids[n.ID] {
					t.Errorf("Replicas(%q) lacks the target replica %q", key, n.ID)
				}
			}
		}
	}
}

func checkDeployment(t testing.TB, name string, d *Deployment) {
	t.Helper()
	if d.Name != name {
		t.Errorf("deployment %q is named %q", name, d.Name)
	}
	if len(d.Buckets) == 0 || d.Ring == nil || d.BucketsPerKey < 1 || d.PointsPerBucket < 1 ||
		d.BackgroundRepairInterval <= 0 || d.RequestTimeout <= 0 || d.MaxTimestampAhead <= 0 || d.MaxValueSize <= 0 {
		t.Errorf("deployment %q has bad settings: %+v", name, d)
		return
	}
	var names []string
	ids := make(map[string]bool)
	total := 0
	for _, b := range d.Buckets {
		names = append(names, b.Name)
		if len(b.Nodes) == 0 {
			t.Errorf("deployment %q: bucket %q is empty", name, b.Name)
		}
		total += len(b.Nodes)
		for _, n := range b.Nodes {
			if ids[n.ID] {
				t.Errorf("deployment %q lists node %q twice", name, n.ID)
			}
			ids[n.ID] = true
			if n.Bucket != b.Name || !validID(n.ID) || n.Host == "" ||
				n.BinaryPort < 1 || n.BinaryPort > 65535 || n.HTTPPort < 0 || n.HTTPPort > 65535 ||
				n.HTTPPort == n.BinaryPort {
				t.Errorf("deployment %q: bad node %+v", name, n)
			}
		}
	}
	if !slices.Equal(d.Ring.Buckets(), names) {
		t.Errorf("deployment %q: ring buckets %v, want %v", name, d.Ring.Buckets(), names)
	}
	least := d.MinReplicas()
	if least < 1 || least > total {
		t.Errorf("deployment %q: MinReplicas() = %d of %d nodes", name, least, total)
	}
	for _, q := range []Quorum{d.WriteQuorum, d.ReadQuorum} {
		if q.Kind == QuorumCount && (q.N < 1 || q.N > least) {
			t.Errorf("deployment %q: quorum %v with at least %d replicas", name, q, least)
		}
	}
	for _, key := range []string{"", "a", "key"} {
		r := d.Replicas(nil, []byte(key))
		if len(r) < least || len(r) > total {
			t.Errorf("deployment %q: %d replicas of %q, want %d to %d", name, len(r), key, least, total)
		}
	}
}
