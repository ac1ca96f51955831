package docker

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
)

// migrationUnderFaults migrates the cluster under load: bucket b6 (n11,
// n12) added as a target, n11 killed during the fill, the target promoted
// while b6 is cut off from b1 (6 s), then b1 (n1, n2) migrated out. Then the
// rejoin: n1 and n2 stopped with their disks, 100 of 200 keys written
// before they left deleted and collected on every replica, and b1 added
// back with n1 and n2 on their old disks: no deleted key may come back.
func migrationUnderFaults(c *compose) fault {
	six := layout{name: "six", buckets: []int{1, 2, 3, 4, 5, 6}}
	withoutB1 := layout{name: "without-b1", buckets: []int{2, 3, 4, 5, 6}}
	back := layout{name: "b1-back", buckets: []int{1, 2, 3, 4, 5, 6}}
	sixCfg, err := config.Parse([]byte(renderConfig(six, nil)))
	if err != nil {
		panic(err) // the suite's own layout
	}
	moving := func(key string) bool {
		for _, r := range sixCfg.Replicas(nil, []byte(key)) {
			if slices.Contains([]string{"n1", "n2", "n11", "n12"}, r.ID) {
				return true
			}
		}
		return false
	}
	return fault{name: "a migration under faults, and a rejoin", mayFail: moving, inject: func(t *testing.T, d *downtime) {
		step := func(what string) { t.Logf("migration: %s", what) }
		const rejoinKeys = 200
		step("b6 added as a target")
		if _, taken := c.reconfigure(t, renderConfig(fiveBuckets, &six)); !taken {
			t.Fatal("the coordinator refused to start the migration")
		}
		c.waitHealthy(t, "tako-node-11", "tako-node-12")
		step("n11 killed during the fill")
		run(t, nil, "docker", "kill", "-s", "KILL", c.container("tako-node-11"))
		time.Sleep(3 * time.Second)
		run(t, nil, "docker", "start", c.container("tako-node-11"))
		c.waitHealthy(t, "tako-node-11")
		c.waitConverged(t, 90*time.Second)

		step("promoted while b6 is cut off from b1")
		heal := c.partition(t, services(nodesOf(6)), services(nodesOf(1)))
		if _, taken := c.reconfigure(t, renderConfig(six, nil)); !taken {
			heal()
			t.Fatal("the coordinator refused to promote a converged migration")
		}
		time.Sleep(6 * time.Second)
		heal()

		// Keys that b1 holds before it leaves: half of them are deleted
		// while it is away.
		written := map[string]string{}
		for i := range rejoinKeys {
			key, value := fmt.Sprintf("rejoin/%d", i), fmt.Sprintf("v%d", i)
			if code, _, _ := c.do("POST", "/values/"+key, []byte(value)); code == 200 {
				written[key] = value
			}
		}
		c.waitConverged(t, 60*time.Second)

		step("b1 migrated out")
		if _, taken := c.reconfigure(t, renderConfig(six, &withoutB1)); !taken {
			t.Fatal("the coordinator refused to start the migration without b1")
		}
		c.waitConverged(t, 90*time.Second)
		upN1, upN2 := d.down("tako-node-01"), d.down("tako-node-02") // they stop serving at once
		if _, taken := c.reconfigure(t, renderConfig(withoutB1, nil)); !taken {
			t.Fatal("the coordinator refused to promote the migration without b1")
		}
		c.waitConverged(t, 60*time.Second) // hand-off: b1's records are on their new replicas
		run(t, nil, "docker", "stop", "-t", "10", c.container("tako-node-01"), c.container("tako-node-02"))

		step("half of the keys deleted while n1 and n2 are away")
		deleted := map[string]bool{}
		for i := 0; i < rejoinKeys; i += 2 {
			key := fmt.Sprintf("rejoin/%d", i)
			if code, _, _ := c.do("DELETE", "/values/"+key, nil); code/100 == 2 {
				deleted[key] = true
			}
		}
		c.waitFor(t, "the tombstones to be collected on every replica", 60*time.Second, func() bool {
			for key := range deleted {
				if s := c.where(key); !s.agreed || s.found {
					return false
				}
			}
			return true
		})

		step("b1 added back with n1 and n2 on their old disks")
		if _, taken := c.reconfigure(t, renderConfig(withoutB1, &back)); !taken {
			t.Fatal("the coordinator refused to add b1 back")
		}
		run(t, nil, "docker", "start", c.container("tako-node-01"), c.container("tako-node-02"))
		c.waitHealthy(t, "tako-node-01", "tako-node-02")
		for _, s := range []string{"tako-node-01", "tako-node-02"} {
			c.waitFor(t, s+" to recover", 60*time.Second, func() bool {
				return strings.Contains(run(t, nil, "docker", "logs", "--since", "1m", c.container(s)), "node recovered")
			})
		}
		upN1()
		upN2()
		c.waitConverged(t, 90*time.Second)
		probe := func(when string) {
			back := 0
			for key := range deleted {
				if s := c.where(key); s.value {
					back++
					if back <= 2 {
						_, _, body := c.do("GET", "/where/"+key, nil)
						t.Logf("rejoin, %s: %s has a value: %s", when, key, strings.Join(strings.Fields(string(body)), " "))
					}
				}
			}
			t.Logf("rejoin, %s: %d deleted keys have a value on a replica; suspects dropped by n1 %v, n2 %v", when, back,
				c.metric(t, "tako-node-01", "tako_refill_suspects_dropped_total"), c.metric(t, "tako-node-02", "tako_refill_suspects_dropped_total"))
		}
		probe("b1 back as a target, converged")
		if _, taken := c.reconfigure(t, renderConfig(back, nil)); !taken {
			t.Fatal("the coordinator refused to promote b1's return")
		}
		c.waitConverged(t, 60*time.Second)

		resurrected, lost := 0, 0
		for key, value := range written {
			for _, entry := range []string{"tako-proxy", "tako-node-01", "tako-node-02"} {
				code, _, body := c.doAt(entry, "GET", "/values/"+key, nil)
				switch {
				case deleted[key] && code == 200:
					resurrected++
					t.Logf("rejoin: deleted %s read through %s: %d %q", key, entry, code, body)
				case !deleted[key] && (code != 200 || string(body) != value):
					lost++
				}
			}
			if s := c.where(key); deleted[key] && s.value {
				resurrected++
				_, _, body := c.do("GET", "/where/"+key, nil)
				t.Logf("rejoin: deleted %s has a value on a replica: %s", key, body)
			}
		}
		if resurrected > 0 {
			for _, s := range []string{"tako-node-01", "tako-node-02"} {
				logs := run(t, nil, "docker", "logs", c.container(s))
				for _, l := range strings.Split(logs, "\n") {
					if strings.Contains(l, "recover") || strings.Contains(l, "suspect") || strings.Contains(l, "refill") || strings.Contains(l, "configuration") {
						t.Logf("%s: %s", s, l)
					}
				}
			}
		}
		t.Logf("rejoin: %d keys written, %d deleted while b1 was away: %d reads or replicas brought a deleted key back, %d kept keys not read back",
			len(written), len(deleted), resurrected, lost)
		if lost > 0 {
			t.Errorf("rejoin: %d kept keys not read back", lost)
		}
		if resurrected > 0 {
			t.Errorf("rejoin: %d reads or replicas brought a deleted key back", resurrected)
		}
	}}
}
