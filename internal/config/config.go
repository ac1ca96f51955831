package config

import (
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/ring"
)

// Config is a parsed and validated configuration. It is immutable: callers
// must not modify it, nor the slices, maps and deployments it points to.
type Config struct {
	// MasterCoordinator is the id of the master coordinator, "" when the
	// file names none. When set, it is the ID of one of Coordinators.
	MasterCoordinator string
	// Coordinators are the coordinators, in file order; empty when the file
	// has none.
	Coordinators []Coordinator
	// AuthTokens are the tokens of the auth section, in file order; empty
	// when the file has none, and then authentication is off.
	AuthTokens []auth.Token
	// Auth is the set of AuthTokens that HTTP servers check requests
	// against; nil (auth off) when there are none.
	Auth *auth.Tokens
	// TLS names the files of the tls section: with it, the binary protocol
	// runs over mutual TLS. Nil when the file has no tls section, and then
	// the binary protocol is plain TCP.
	TLS *TLSFiles
	// Active is the active deployment, the one that serves the keys. It is
	// never nil in a Config returned by Parse or Load.
	Active *Deployment
	// Target is the deployment that a live migration moves the keys to,
	// nil when no migration is under way. It is never the same as Active.
	Target *Deployment
	// Deployments holds every deployment of the file, Active and Target
	// included, by name.
	Deployments map[string]*Deployment

	// order is the deployments' names in file order.
	order []string
}

// TLSFiles are the paths of the tls section, as written: relative paths
// are relative to the process's working directory. CA, Cert and Key are
// set.
type TLSFiles struct {
	// CA is the PEM certificate of the cluster's certificate authority:
	// peers must present a certificate it signed.
	CA string
	// Cert is the PEM certificate a process presents, unless its role has
	// its own in Roles.
	Cert string
	// Key is the PEM private key of Cert.
	Key string
	// Roles give some roles (TLSRoles) a certificate of their own: a
	// process of such a role presents it instead of Cert. Nil or empty:
	// every process presents Cert.
	Roles map[string]KeyPair
}

// KeyPair is a certificate and its key: paths of PEM files.
type KeyPair struct {
	Cert, Key string
}

// TLSRoles are the roles that the tls section may give a certificate of
// their own, in the order the canonical JSON writes them: nodes, proxies,
// coordinators, and Go clients (tako-bench -cfg among them).
var TLSRoles = []string{"node", "proxy", "coordinator", "client"}

// For returns the certificate and key that a process of role presents:
// its role's own, or the section's.
func (f *TLSFiles) For(role string) (cert, key string) {
	if kp, ok := f.Roles[role]; ok {
		return kp.Cert, kp.Key
	}
	return f.Cert, f.Key
}

// Equal reports whether f and g name the same files (or are both nil).
func (f *TLSFiles) Equal(g *TLSFiles) bool {
	if f == nil || g == nil {
		return f == g
	}
	if f.CA != g.CA || f.Cert != g.Cert || f.Key != g.Key || len(f.Roles) != len(g.Roles) {
		return false
	}
	for role, kp := range f.Roles {
		if g.Roles[role] != kp {
			return false
		}
	}
	return true
}

// Coordinator is a coordinator server: it serves the configuration over HTTP.
type Coordinator struct {
	// ID is the coordinator's id, the key it is listed under.
	ID string
	// Host is the host name or IP address the coordinator serves on.
	Host string
	// Port is the coordinator's HTTP port, 1 to 65535.
	Port int
}

// Addr returns the coordinator's address as "host:port".
func (c Coordinator) Addr() string {
	return net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
}

// Deployment is one layout of the cluster: its settings, its buckets of
// nodes and the ring that places keys on them. The defaults given below are
// what Parse uses when the file does not set a value. In a Deployment that
// Parse returns, only the booleans and the quorums can have their zero value
// (false, and the majority quorum); every duration, size and count is
// positive.
type Deployment struct {
	// Name is the deployment's name, the key it is listed under.
	Name string
	// ReadRepair says whether a read that finds stale replicas writes the
	// newest version back to them. Default true.
	ReadRepair bool
	// BackgroundRepair says whether nodes run background repair, which
	// brings every replica of every key up to date. Default true.
	BackgroundRepair bool
	// BackgroundRepairInterval is how long one round of background repair
	// over all of a node's keys should take; positive. Default 24h.
	BackgroundRepairInterval time.Duration
	// WriteQuorum is how many of a key's replicas must store a write before
	// it is acknowledged. Default (and zero value) quorum: a majority.
	WriteQuorum Quorum
	// ReadQuorum is how many of a key's replicas must answer a read.
	// Default (and zero value) quorum: a majority.
	ReadQuorum Quorum
	// RequestTimeout is how long one replica may take to answer one
	// request; positive. Default 2s.
	RequestTimeout time.Duration
	// MaxValueSize is the largest value accepted, in bytes; positive.
	// Default 64 MiB.
	MaxValueSize int64
	// MaxTimestampAhead is how far in the future of the local clock a
	// client-supplied timestamp may be; positive. Default 10m.
	MaxTimestampAhead time.Duration
	// MaxTTL is the longest time to live a write may ask for (X-TTL, or an
	// X-Expires-At that far ahead of the receiver's clock); positive.
	// Default 3650d (ten years).
	MaxTTL time.Duration
	// TombstoneGrace is how long a delete's tombstone is kept at least,
	// and then only dropped once every replica of its key holds it;
	// positive. Default 10 × BackgroundRepairInterval.
	TombstoneGrace time.Duration
	// RepairBandwidth bounds the bytes per second that one node receives
	// by background repair and refill together (repair_bandwidth), so
	// that a node refilling after a lost disk leaves room for clients;
	// positive. Default 64 MiB.
	RepairBandwidth int64
	// Limits protect each process from clients that hold too much of it.
	Limits Limits
	// BucketsPerKey is the number of buckets a key is replicated to, as
	// written (hash.buckets_per_key); positive, default 1. It may exceed
	// len(Buckets), in which case every key lives on every bucket.
	BucketsPerKey int
	// PointsPerBucket is the number of points each bucket has on the ring
	// (hash.points_per_bucket); positive. Default ring.DefaultPointsPerBucket.
	PointsPerBucket int
	// Buckets are the deployment's buckets in file order, at least one,
	// none empty.
	Buckets []Bucket
	// Ring is the consistent hash over the names of Buckets, in the order
	// of Buckets, with PointsPerBucket points each: the bucket indexes it
	// returns index Buckets.
	Ring *ring.Ring
}

// Bucket is a group of nodes that mirror each other: each holds every key
// that the ring gives the bucket.
type Bucket struct {
	// Name is the bucket's name, the key it is listed under.
	Name string
	// Nodes are the bucket's nodes in file order, at least one.
	Nodes []Node
}

// Node is one replica server.
type Node struct {
	// ID is the node's id, the key it is listed under, and what the node is
	// started with (-id).
	ID string
	// Bucket is the name of the bucket the node belongs to.
	Bucket string
	// Host is the host name or IP address the node serves on.
	Host string
	// HTTPPort is the port of the node's HTTP interface, 1 to 65535, or 0
	// when the node has none (the [HOST, BINARY_PORT] form).
	HTTPPort int
	// BinaryPort is the port of the node's binary protocol, 1 to 65535.
	BinaryPort int
}

// BinaryAddr returns the address of the node's binary protocol as
// "host:port".
func (n Node) BinaryAddr() string {
	return net.JoinHostPort(n.Host, strconv.Itoa(n.BinaryPort))
}

// HTTPAddr returns the address of the node's HTTP interface as "host:port",
// or "" when the node has none.
func (n Node) HTTPAddr() string {
	if n.HTTPPort == 0 {
		return ""
	}
	return net.JoinHostPort(n.Host, strconv.Itoa(n.HTTPPort))
}

// Node returns the node with the given id among the nodes of the active and
// the target deployment, and the deployment whose settings it follows: the
// target when both name it, since the node is moving there. The last result
// is false when neither names it; nodes of the other deployments are not
// part of the running cluster and are not found.
func (c *Config) Node(id string) (Node, *Deployment, bool) {
	for _, d := range []*Deployment{c.Target, c.Active} {
		if d == nil {
			continue
		}
		for _, b := range d.Buckets {
			for _, n := range b.Nodes {
				if n.ID == id {
					return n, d, true
				}
			}
		}
	}
	return Node{}, nil, false
}

// Nodes returns every node of the running cluster: the nodes of the active
// deployment in file order, then those of the target deployment that the
// active one does not have. A node in both appears once, as the active
// deployment lists it.
func (c *Config) Nodes() []Node {
	var out []Node
	seen := make(map[string]bool)
	for _, d := range []*Deployment{c.Active, c.Target} {
		if d == nil {
			continue
		}
		for _, b := range d.Buckets {
			for _, n := range b.Nodes {
				if !seen[n.ID] {
					seen[n.ID] = true
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// Replicas appends to dst the replicas of key in the deployment: every node
// of each of the min(BucketsPerKey, len(Buckets)) buckets that the ring gives
// the key, the primary bucket's nodes first, each bucket's nodes in file
// order.
func (d *Deployment) Replicas(dst []Node, key []byte) []Node {
	return d.ReplicasOfHash(dst, keyhash.Sum(key))
}

// ReplicasOfHash is Replicas for every key whose hash is h.
func (d *Deployment) ReplicasOfHash(dst []Node, h uint32) []Node {
	var buf [8]int
	for _, bi := range d.Ring.LookupHash(buf[:0], h, d.BucketsPerKey) {
		dst = append(dst, d.Buckets[bi].Nodes...)
	}
	return dst
}

// Replicas appends to dst the replicas of key in the running cluster: its
// replicas in the active deployment, then those of its replicas in the
// target deployment that are not already among them (compared by ID).
func (c *Config) Replicas(dst []Node, key []byte) []Node {
	return c.ReplicasOfHash(dst, keyhash.Sum(key))
}

// ReplicasOfHash is Replicas for every key whose hash is h.
func (c *Config) ReplicasOfHash(dst []Node, h uint32) []Node {
	start := len(dst)
	dst = c.Active.ReplicasOfHash(dst, h)
	if c.Target == nil {
		return dst
	}
	mid := len(dst)
	dst = c.Target.ReplicasOfHash(dst, h)
	// Drop the target's replicas that the active deployment already has,
	// in place, keeping the order.
	out := mid
	for i := mid; i < len(dst); i++ {
		if !hasID(dst[start:mid], dst[i].ID) {
			dst[out] = dst[i]
			out++
		}
	}
	clear(dst[out:])
	return dst[:out]
}

func hasID(nodes []Node, id string) bool {
	for _, n := range nodes {
		if n.ID == id {
			return true
		}
	}
	return false
}

// MinReplicas returns the smallest number of replicas a key can have in the
// deployment: the sum of the sizes of its min(BucketsPerKey, len(Buckets))
// smallest buckets. Parse checks every numeric quorum against it.
func (d *Deployment) MinReplicas() int {
	sizes := make([]int, len(d.Buckets))
	for i, b := range d.Buckets {
		sizes[i] = len(b.Nodes)
	}
	slices.Sort(sizes)
	total := 0
	for _, s := range sizes[:max(0, min(d.BucketsPerKey, len(sizes)))] {
		total += s
	}
	return total
}

// LargestMaxValueSize is the largest max_value_size of the active and the
// target deployment: what the binary protocol's frames must carry.
func (c *Config) LargestMaxValueSize() int64 {
	largest := c.Active.MaxValueSize
	if c.Target != nil && c.Target.MaxValueSize > largest {
		largest = c.Target.MaxValueSize
	}
	return largest
}

// Limits are what keeps one client from starving the others: the limits
// section of a deployment. A process applies the limits of the deployment
// whose settings it follows when it starts (a proxy: the active
// deployment's); a change takes effect when it restarts.
type Limits struct {
	// MaxConnections is how many connections each listener (HTTP, binary
	// protocol) keeps open. At the limit, a new HTTP connection evicts the
	// oldest one that has no request under way; when every one is busy, and
	// on the binary port, the new connection is closed at once. Default 4096.
	MaxConnections int
	// MaxRequestsInFlight is how many HTTP requests a process works on at
	// once; beyond it a request is answered 503 with Retry-After at once
	// (load shedding) rather than queued. Default 1024.
	MaxRequestsInFlight int
	// MaxRequestsPerConnection is how many binary-protocol requests of one
	// connection may be under way at once; beyond it the server stops
	// reading that connection. Default 256.
	MaxRequestsPerConnection int
	// MaxBytesInFlight is how many bytes of requests a process holds at
	// once, its HTTP and binary ports together (max_bytes_in_flight): a
	// request reserves its body's bytes before reading them, and one that
	// does not fit waits up to 1 s, then is answered 503 with Retry-After
	// (HTTP) or CodeOverloaded (binary). The last sixteenth is kept for
	// requests of 64 KiB or less; a larger request may hold the rest, so a
	// value larger than that is served alone. Positive; default 256 MiB.
	MaxBytesInFlight int64
	// HeaderTimeout is how long a client has to send a request's headers
	// (the slowloris defence). Default 10s.
	HeaderTimeout time.Duration
	// BodyTimeout is how long a client has to send a whole request, body
	// included. Default 1m.
	BodyTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its next
	// request. Default 2m.
	IdleTimeout time.Duration
}

// DefaultLimits are the limits of a deployment that sets none.
var DefaultLimits = Limits{
	MaxConnections:           4096,
	MaxRequestsInFlight:      1024,
	MaxRequestsPerConnection: 256,
	MaxBytesInFlight:         256 << 20,
	HeaderTimeout:            10 * time.Second,
	BodyTimeout:              time.Minute,
	IdleTimeout:              2 * time.Minute,
}
