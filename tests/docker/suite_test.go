package docker

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
)

// The fault suite runs the compose cluster under a configuration of its
// own: the shape of deploy/cluster.yaml (five buckets of two nodes, every
// key on two buckets), with background repair every repairInterval and
// tombstones collected after tombstoneGrace, so that repair and garbage
// collection run during every fault. Two more node services, tako-node-11
// and tako-node-12 (bucket b6), start idle: a node started with -c waits
// for a configuration that names it, which the migration fault writes.
const (
	repairInterval = 2 * time.Second
	tombstoneGrace = 6 * time.Second
	// spareNodes is how many node services beyond the ten of
	// deploy/docker-compose.yml the suite's override adds.
	spareNodes = 2
)

// layout is one deployment of the suite: bucket bK holds nodes n(2K-1)
// and n(2K).
type layout struct {
	name    string
	buckets []int
}

// fiveBuckets is the deployment of deploy/cluster.yaml.
var fiveBuckets = layout{name: "cluster", buckets: []int{1, 2, 3, 4, 5}}

// renderConfig returns the suite's configuration with active (and target,
// when not nil) as its deployments.
func renderConfig(active layout, target *layout) string {
	var b strings.Builder
	b.WriteString("# The container fault suite's configuration (tests/docker/suite_test.go).\n---\n")
	b.WriteString("master_coordinator: c1\n\ncoordinators:\n    c1: [tako-coordinator-1, 4712]\n\n")
	fmt.Fprintf(&b, "active_deployment: %s\n", active.name)
	if target != nil {
		fmt.Fprintf(&b, "target_deployment: %s\n", target.name)
	}
	b.WriteString("\ndeployments:\n")
	for _, d := range []*layout{&active, target} {
		if d == nil {
			continue
		}
		fmt.Fprintf(&b, "    %s:\n        read_repair: yes\n", d.name)
		fmt.Fprintf(&b, "        background_repair_interval: %s\n        tombstone_grace: %s\n", repairInterval, tombstoneGrace)
		b.WriteString("        hash:\n            buckets_per_key: 2\n        buckets:\n")
		for _, k := range d.buckets {
			fmt.Fprintf(&b, "            b%d:\n", k)
			for _, n := range []int{2*k - 1, 2 * k} {
				fmt.Fprintf(&b, "                n%d: [tako-node-%02d, 5711, 4711]\n", n, n)
			}
		}
	}
	return b.String()
}

// suiteOverride writes the suite's configuration and the compose override
// that mounts it into the coordinator and adds the spare node services. It
// returns the override and the configuration's path on the host (written
// in place by reconfigure: the coordinator sees the same file).
func suiteOverride(t *testing.T) (override, cfgPath string) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(cfgPath, []byte(renderConfig(fiveBuckets, nil)), 0o644); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("version: \"3\"\nservices:\n")
	fmt.Fprintf(&b, "  tako-coordinator-1:\n    volumes:\n      - %s:/etc/tako/cluster.yaml:ro\n", cfgPath)
	for n := 11; n < 11+spareNodes; n++ {
		fmt.Fprintf(&b, "  tako-node-%02d:\n    image: ${TAKO_IMAGE:-tako:dev}\n    hostname: tako-node-%02d\n", n, n)
		fmt.Fprintf(&b, "    command: [\"/bin/tako-node\", \"-id\", \"n%d\", \"-c\", \"tako-coordinator-1:4712\", \"-v\", \"/var/tako\"]\n", n)
		fmt.Fprintf(&b, "    volumes:\n      - n%d:/var/tako\n", n)
	}
	b.WriteString("volumes:\n")
	for n := 11; n < 11+spareNodes; n++ {
		fmt.Fprintf(&b, "  n%d:\n", n)
	}
	override = filepath.Join(dir, "suite-override.yml")
	if err := os.WriteFile(override, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return override, cfgPath
}

// config returns the configuration the suite last wrote.
func (c *compose) config(t *testing.T) *config.Config {
	t.Helper()
	path := c.cfgPath
	if path == "" {
		path = "../../deploy/cluster.yaml"
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// migrationState is what the coordinator's GET /migration says.
type migrationState struct {
	Epoch     int64  `json:"epoch"`
	Active    string `json:"active_deployment"`
	Target    string `json:"target_deployment"`
	Synced    int    `json:"nodes_synced"`
	Converged bool   `json:"converged"`
}

// migration asks the coordinator how far the nodes are in sync.
func (c *compose) migration() (migrationState, error) {
	var st migrationState
	ip, err := c.ip("tako-coordinator-1")
	if err != nil {
		return st, err
	}
	code, _, body := request(httpClient, "GET", "http://"+ip+":4712/migration", nil)
	if code != 200 {
		return st, fmt.Errorf("GET /migration: %d %s", code, body)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("GET /migration: %w", err)
	}
	return st, nil
}

// reconfigure writes yaml over the suite's configuration file and makes the
// coordinator reload it (SIGHUP). It returns the epoch served afterwards
// and whether the coordinator took the file (a new epoch) or kept the
// last one (it refused the file).
func (c *compose) reconfigure(t *testing.T, yaml string) (epoch int64, taken bool) {
	t.Helper()
	before, err := c.migration()
	if err != nil {
		t.Fatal(err)
	}
	// In place: the coordinator's bind mount follows the file's inode.
	if err := os.WriteFile(c.cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-time.Second).Format(time.RFC3339)
	run(t, nil, "docker", "kill", "-s", "HUP", c.container("tako-coordinator-1"))
	var logs string
	c.waitFor(t, "the coordinator to reload its file", 20*time.Second, func() bool {
		logs = run(t, nil, "docker", "logs", "--since", since, c.container("tako-coordinator-1"))
		return strings.Contains(logs, "configuration reloaded") || strings.Contains(logs, "refusing the reload") ||
			strings.Contains(logs, "configuration file unchanged")
	})
	after, err := c.migration()
	if err != nil {
		t.Fatal(err)
	}
	return after.Epoch, after.Epoch != before.Epoch
}

// waitConverged waits until every node of the served configuration has
// finished a clean repair pass under it.
func (c *compose) waitConverged(t *testing.T, limit time.Duration) {
	t.Helper()
	start := time.Now()
	c.waitFor(t, "the nodes to converge under the served configuration", limit, func() bool {
		st, err := c.migration()
		return err == nil && st.Converged
	})
	t.Logf("converged in %v", time.Since(start).Round(100*time.Millisecond))
}

// ip returns the address of service's container on the compose network.
func (c *compose) ip(service string) (string, error) {
	out, err := exec.Command("docker", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", c.container(service)).Output()
	ip := strings.TrimSpace(string(out))
	if err != nil || ip == "" {
		return "", fmt.Errorf("no address for %s: %v", service, err)
	}
	return ip, nil
}
