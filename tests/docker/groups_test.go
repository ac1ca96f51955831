package docker

import (
	"strings"
	"testing"
	"time"
)

// partitionFault cuts the node groups a and b from each other for hold;
// both: both ways, else a hears nothing from b (b's messages to a, and its
// answers to a's requests, are lost; a's reach b).
func partitionFault(c *compose, name string, a, b []string, both bool, hold time.Duration) fault {
	return fault{name: name, reach: cutOff(a, b, both), inject: func(t *testing.T, d *downtime) {
		heal := c.deafen(t, services(a), services(b))
		if both {
			healB := c.deafen(t, services(b), services(a))
			defer healB()
		}
		defer heal()
		time.Sleep(hold)
	}}
}

// coordinatorCutOff cuts the coordinator from nodes n1 to n5 both ways.
// Meanwhile the configuration changes (a harmless setting), which only
// n6 to n10 hear of, and n2 restarts, which must start from its cached
// configuration; once healed every node serves the new configuration.
func coordinatorCutOff(c *compose) fault {
	cut := []string{"n1", "n2", "n3", "n4", "n5"}
	return fault{name: "coordinator cut off from half the nodes", together: []string{"n2"}, inject: func(t *testing.T, d *downtime) {
		heal := c.partition(t, []string{"tako-coordinator-1"}, services(cut))
		base := renderConfig(fiveBuckets, nil)
		changed := strings.ReplaceAll(base, "tombstone_grace:", "repair_bandwidth: 48MiB/s\n        tombstone_grace:")
		epoch, taken := c.reconfigure(t, changed)
		if !taken {
			t.Fatalf("the coordinator did not take a harmless change")
		}
		time.Sleep(3 * time.Second)
		c.restartFromCache(t, d, "tako-node-02", "while cut off from the coordinator")
		for _, id := range cut {
			if e := c.nodeEpoch(t, nodeService(id)); e >= epoch {
				t.Errorf("%s serves epoch %d while cut off from the coordinator, which serves %d since the cut", id, e, epoch)
			}
		}
		time.Sleep(5 * time.Second)
		heal()
		for _, s := range nodeServices() {
			c.waitFor(t, s+" to serve the new configuration", 30*time.Second, func() bool { return c.nodeEpoch(t, s) >= epoch })
		}
		c.reconfigure(t, base)
	}}
}

// nodeEpoch returns the configuration epoch that service reports on its
// /metrics (tako_config_epoch); -1 when it does not answer.
func (c *compose) nodeEpoch(t *testing.T, service string) int64 {
	return int64(c.metric(t, service, "tako_config_epoch"))
}

// clockSteppedBack restarts node id with its clock 5 s behind the others
// for 10 s, then with the right clock again.
func clockSteppedBack(c *compose, id string) fault {
	service := nodeService(id)
	return fault{name: "a node's clock stepped back 5 s", together: []string{id},
		clockBehind: map[string]time.Duration{service: 5 * time.Second}, inject: func(t *testing.T, d *downtime) {
			up := d.down(service)
			c.recreate(t, service, "-test-clock-offset", "-5s")
			c.waitHealthy(t, service)
			up()
			time.Sleep(10 * time.Second)
			up = d.down(service)
			c.recreate(t, service)
			c.waitHealthy(t, service)
			up()
		}}
}

// destructiveConfig writes a valid configuration that drops bucket b5 with
// no target deployment: the coordinator must refuse it and keep serving
// the running one, and no node may change its epoch.
func destructiveConfig(c *compose) fault {
	return fault{name: "a destructive configuration refused", inject: func(t *testing.T, d *downtime) {
		base := renderConfig(fiveBuckets, nil)
		before := c.nodeEpoch(t, "tako-node-09")
		epoch, taken := c.reconfigure(t, renderConfig(layout{name: "cluster", buckets: []int{1, 2, 3, 4}}, nil))
		if taken {
			t.Errorf("the coordinator served a configuration that drops bucket b5 with no target (epoch %d)", epoch)
		}
		logs := run(t, nil, "docker", "logs", "--since", time.Now().Add(-time.Minute).Format(time.RFC3339), c.container("tako-coordinator-1"))
		if !strings.Contains(logs, "refusing the reload") {
			t.Errorf("the coordinator does not say it refused the file:\n%s", tail(logs, 5))
		} else {
			t.Logf("the coordinator refused it: %s", lineWith(logs, "refusing the reload"))
		}
		time.Sleep(5 * time.Second)
		for _, s := range nodeServices() {
			if e := c.nodeEpoch(t, s); e != before {
				t.Errorf("%s serves epoch %d after the refused file, %d before", s, e, before)
			}
		}
		if _, taken := c.reconfigure(t, base); taken {
			t.Errorf("writing back the running configuration changed the epoch")
		}
	}}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

// noCrash fails t if service's logs since since hold a panic or a stack
// trace.
func (c *compose) noCrash(t *testing.T, service, since string) {
	t.Helper()
	logs := run(t, nil, "docker", "logs", "--since", since, c.container(service))
	for _, bad := range []string{"panic:", "goroutine ", "fatal error:"} {
		if strings.Contains(logs, bad) {
			t.Errorf("%s logged %q:\n%s", service, bad, lineWith(logs, bad))
		}
	}
}
