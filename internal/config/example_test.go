package config_test

import (
	"errors"
	"fmt"

	"github.com/takodb/tako/internal/config"
)

func ExampleParse() {
	c, err := config.Parse([]byte(`
active_deployment: cluster
deployments:
  cluster:
    write_quorum: all
    hash: {buckets_per_key: 2}
    buckets:
      b1: {n1: [10.0.0.1, 5711, 4711], n2: [10.0.0.2, 5711, 4711]}
      b2: {n3: [10.0.0.3, 5711, 4711], n4: [10.0.0.4, 5711, 4711]}
      b3: {n5: [10.0.0.5, 4711]}
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	d := c.Active
	replicas := c.Replicas(nil, []byte("some key"))
	fmt.Println(len(replicas) >= d.MinReplicas(), d.MinReplicas())
	fmt.Println(d.WriteQuorum, d.WriteQuorum.Required(len(replicas)) == len(replicas))
	fmt.Println(d.ReadQuorum, d.ReadQuorum.Required(4))
	// Output:
	// true 3
	// all true
	// quorum 3
}

func ExampleError() {
	_, err := config.Parse([]byte(`
active_deployment: cluster
deployments:
  cluster:
    read_repair: maybe
    buckets:
      b1: {n1: [h, 70000]}
`))
	var e *config.Error
	if errors.As(err, &e) {
		for _, p := range e.Problems {
			fmt.Printf("%d %s %s: %s\n", p.Line, p.Deployment, p.Path, p.Message)
		}
	}
	// Output:
	// 5 cluster deployments.cluster.read_repair: want yes or no (or true/false, on/off), got "maybe"
	// 7 cluster deployments.cluster.buckets.b1.n1: binary port 70000 out of range 1-65535
}
