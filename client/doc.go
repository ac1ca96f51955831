// Package client is Tako's Go client. It talks the binary protocol straight
// to the nodes, with no proxy in between.
//
// A Client holds the cluster's configuration, so it knows the replicas of
// every key, and coordinates each request itself, as a node does: it sends
// it to every replica of the key at once and answers once the quorum has
// (quorum writes stamped above what a read quorum holds, quorum reads with
// read repair), with no node in between; a replica that does not answer in
// time is marked down and skipped until a probe answers, and asked again,
// forced, only when the quorum cannot be made without it. One pipelined
// connection per node, re-dialled with backoff, carries every request to
// that node. A Client is safe for concurrent use; create one per process
// and share it.
//
// Nodes refuse such requests when the client's configuration is older than
// the layout they place keys by (a client that missed a migration's step):
// the client then sends each request to one replica of the key, which
// coordinates it across all the key's replicas, and tries another replica
// when that one does not answer, until it follows a newer configuration.
// It does so always with Options.Forward, and with a token of the read role
// (a read token cannot write back what a read finds behind).
//
// A Client starts from a coordinator (Dial), and then follows every change
// of the configuration, or from a configuration file (Open):
//
//	c, err := client.Dial(ctx, []string{"localhost:4712"}, client.Options{})
//	// or: c, err := client.Open("examples/local_cluster.yaml", client.Options{})
//	if err != nil { ... }
//	defer c.Close()
//	res, err := c.Put(ctx, []byte("greeting"), []byte("hello"))
//	v, err := c.Get(ctx, []byte("greeting"))
//
// Errors: ErrNotFound for a key that has no version or was deleted (Get
// also returns the tombstone's Version then), ErrUnavailable when no
// replica could reach its quorum, ErrBadRequest for a request the cluster
// refuses (an empty or oversized key, a timestamp too far in the future),
// and the context's error when ctx ends first.
//
// A cluster whose configuration has a tls section is dialled with mutual
// TLS, with the section's certificate (New loads it). One with an auth
// section serves only requests that a token it lists allows: give it in
// Options.Token (the client reads no environment variable); a read token
// may Get and Where, a write
// token also Put and Delete. Without a valid token requests fail with
// ErrUnauthorized, with a lesser one with ErrForbidden.
//
//	c, err := client.Open("tako.yaml", client.Options{Token: os.Getenv("APP_TOKEN")})
package client
