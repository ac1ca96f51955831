package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/testcluster"
	"github.com/takodb/tako/internal/testcoordinator"
)

// Example writes, reads and deletes a key, with a client that starts from a
// configuration file (Open). The cluster here runs inside the example's
// process; against a real cluster, pass its configuration file (for
// instance the one tako-cluster writes to var/tako/etc/) to Open.
func Example() {
	dir, _ := os.MkdirTemp("", "tako-example-")
	defer os.RemoveAll(dir)
	cluster, err := testcluster.Start(dir, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}, {"n3"}}, BucketsPerKey: 2}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()

	c, err := client.Open(cluster.ConfigPath, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()

	if _, err := c.Put(ctx, []byte("greeting"), []byte("hello, world")); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, []byte("greeting"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", v.Value)

	if _, err := c.Delete(ctx, []byte("greeting")); err != nil {
		log.Fatal(err)
	}
	_, err = c.Get(ctx, []byte("greeting"))
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// hello, world
	// true
}

// ExampleClient_PutAt shows timestamps: the newest write wins, and an older
// one is reported as superseded.
func ExampleClient_PutAt() {
	dir, _ := os.MkdirTemp("", "tako-example-")
	defer os.RemoveAll(dir)
	cluster, err := testcluster.Start(dir, testcluster.Spec{Buckets: [][]string{{"n1"}}, BucketsPerKey: 1}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	c := client.New(cluster.Config, client.Options{})
	defer c.Close()
	ctx := context.Background()

	c.PutAt(ctx, []byte("k"), []byte("newer"), 2_000_000)
	res, _ := c.PutAt(ctx, []byte("k"), []byte("older"), 1_000_000)
	fmt.Println(res.Superseded, res.Timestamp)
	v, _ := c.Get(ctx, []byte("k"))
	fmt.Printf("%s\n", v.Value)
	// Output:
	// true 2000000
	// newer
}

// ExampleDial starts from a coordinator: the client asks it for the
// cluster's configuration, and follows every change of it until Close, as
// nodes and proxies do. Against a real cluster, pass the address of one of
// its coordinators (tako-coordinator, port 4712 by default), and the token
// and TLS settings your deployment needs in the Options.
func ExampleDial() {
	dir, _ := os.MkdirTemp("", "tako-example-")
	defer os.RemoveAll(dir)
	cluster, err := testcluster.Start(dir, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}}, BucketsPerKey: 2, Coordinator: true}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	coord, err := testcoordinator.Start(cluster, dir, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer coord.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, []string{coord.Addr}, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	if _, err := c.Put(ctx, []byte("greeting"), []byte("hello from a coordinator's configuration")); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, []byte("greeting"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", v.Value)
	// Output:
	// hello from a coordinator's configuration
}

// ExampleClient_PutTTL writes a value that expires: reads return it with
// its expiry until then, and ErrNotFound after, with Expired set.
func ExampleClient_PutTTL() {
	dir, _ := os.MkdirTemp("", "tako-example-")
	defer os.RemoveAll(dir)
	cluster, err := testcluster.Start(dir, testcluster.Spec{Buckets: [][]string{{"n1"}, {"n2"}}, BucketsPerKey: 2}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer cluster.Close()
	c := client.New(cluster.Config, client.Options{})
	defer c.Close()
	ctx := context.Background()

	if _, err := c.PutTTL(ctx, []byte("session"), []byte("token-123"), time.Second); err != nil {
		log.Fatal(err)
	}
	v, err := c.Get(ctx, []byte("session"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, expires in at most a second: %v\n", v.Value, v.ExpiresAt-c.Now() <= time.Second.Microseconds())

	time.Sleep(time.Until(time.UnixMicro(v.ExpiresAt)) + 10*time.Millisecond)
	v, err = c.Get(ctx, []byte("session"))
	fmt.Println(errors.Is(err, client.ErrNotFound), v.Expired)
	// Output:
	// token-123, expires in at most a second: true
	// true true
}
