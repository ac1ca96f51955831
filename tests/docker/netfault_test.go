package docker

import (
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Partitions between groups of containers are made with iptables in each
// container's own network namespace (entered with nsenter from the host:
// the image is scratch and has no tools): a receiver drops what comes from
// the senders it must not hear. The host, which runs the workload, and the
// containers outside the groups still reach everyone.

// needNetTools skips t when the host cannot enter a container's network
// namespace.
func needNetTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"nsenter", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (.ci/run installs it)", tool)
		}
	}
}

// iptables runs iptables args in service's network namespace.
func (c *compose) iptables(t *testing.T, service string, args ...string) {
	t.Helper()
	pid := strings.TrimSpace(run(t, nil, "docker", "inspect", "-f", "{{.State.Pid}}", c.container(service)))
	run(t, nil, "nsenter", append([]string{"-t", pid, "-n", "iptables", "-w"}, args...)...)
}

// deafen makes each of receivers drop every packet that comes from one of
// senders: the receivers hear nothing from the senders, and the senders'
// connections to them, and their answers, go nowhere. It returns what
// heals it.
func (c *compose) deafen(t *testing.T, receivers, senders []string) (heal func()) {
	t.Helper()
	needNetTools(t)
	var ips []string
	for _, s := range senders {
		ip, err := c.ip(s)
		if err != nil {
			t.Fatal(err)
		}
		ips = append(ips, ip)
	}
	for _, r := range receivers {
		for _, ip := range ips {
			c.iptables(t, r, "-I", "INPUT", "-s", ip, "-j", "DROP")
		}
	}
	return func() {
		for _, r := range receivers {
			c.iptables(t, r, "-F", "INPUT")
		}
	}
}

// partition cuts groups a and b from each other both ways. It returns what
// heals it.
func (c *compose) partition(t *testing.T, a, b []string) (heal func()) {
	t.Helper()
	healA := c.deafen(t, a, b)
	healB := c.deafen(t, b, a)
	return func() { healA(); healB() }
}

// reach tells whether a message from one service arrives at another while
// a fault lasts (nodes are named by id, n1..n12, or by service).
type reach func(from, to string) bool

// cutOff returns the reach of a partition where receivers hear nothing from
// senders (and, when both, senders nothing from receivers).
func cutOff(receivers, senders []string, both bool) reach {
	in := func(x string, set []string) bool { return slices.Contains(set, x) }
	return func(from, to string) bool {
		if in(to, receivers) && in(from, senders) {
			return false
		}
		return !(both && in(to, senders) && in(from, receivers))
	}
}

// nodesOf returns the node ids of buckets (bucket bK holds n(2K-1), n(2K)).
func nodesOf(buckets ...int) []string {
	var ids []string
	for _, k := range buckets {
		ids = append(ids, "n"+strconv.Itoa(2*k-1), "n"+strconv.Itoa(2*k))
	}
	return ids
}

// services returns the compose services of node ids.
func services(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = nodeService(id)
	}
	return out
}
