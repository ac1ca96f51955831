package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/ring"
)

// Defaults of a deployment's settings.
const (
	defaultBackgroundRepairInterval = 24 * time.Hour
	defaultRequestTimeout           = 2 * time.Second
	defaultMaxValueSize             = 64 << 20
	defaultMaxTimestampAhead        = 10 * time.Minute
	defaultMaxTTL                   = 3650 * 24 * time.Hour
	defaultRepairBandwidth          = 64 << 20
	// defaultTombstoneGraceIntervals is tombstone_grace's default, in
	// background repair intervals.
	defaultTombstoneGraceIntervals = 10
)

// Limits that keep a hostile or mistaken file from costing unbounded memory
// or time.
const (
	// maxPointsPerBucket bounds hash.points_per_bucket.
	maxPointsPerBucket = 10000
	// maxRingPoints bounds the ring points of all deployments together.
	maxRingPoints = 1 << 22
	// maxWork bounds the map entries and values the parser visits, which
	// YAML aliases could otherwise multiply without limit.
	maxWork = 1 << 20
	// maxIDLength bounds node and coordinator ids, which become file names.
	maxIDLength = 255
)

// The keys each map accepts, in the order the documentation lists them.
var (
	topKeys = []string{"master_coordinator", "coordinators", "auth", "tls", "active_deployment",
		"target_deployment", "deployments"}
	authKeys       = []string{"tokens"}
	tokenKeys      = []string{"sha256", "role"}
	tlsKeys        = []string{"ca", "cert", "key", "node", "proxy", "coordinator", "client"}
	keyPairKeys    = []string{"cert", "key"}
	deploymentKeys = []string{"read_repair", "background_repair", "background_repair_interval",
		"write_quorum", "read_quorum", "request_timeout", "max_value_size",
		"max_timestamp_ahead", "max_ttl", "tombstone_grace", "repair_bandwidth", "limits", "hash", "buckets"}
	hashKeys   = []string{"buckets_per_key", "points_per_bucket"}
	limitsKeys = []string{"max_connections", "max_requests_in_flight", "max_requests_per_connection",
		"max_bytes_in_flight", "header_timeout", "body_timeout", "idle_timeout"}
)

const nodeForms = "[HOST, BINARY_PORT] or [HOST, HTTP_PORT, BINARY_PORT]"

// Parse parses and validates a configuration in YAML or JSON. It returns an
// *Error listing every problem when the document is YAML but not a valid
// configuration, and an error starting "config: parsing YAML:" when it is
// not YAML.
func Parse(data []byte) (*Config, error) {
	c, problems, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("config: parsing YAML: %w", err)
	}
	if problems != nil {
		return nil, problems
	}
	return c, nil
}

// Load reads the file at path and parses it as Parse does. Its errors name
// the path; errors.As finds the *Error of an invalid configuration in them.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, problems, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("config: %s: parsing YAML: %w", path, err)
	}
	if problems != nil {
		return nil, fmt.Errorf("config: %s: %w", path, problems)
	}
	return c, nil
}

// parse returns the configuration, or the problems of a YAML document that is
// not a valid configuration, or the error of one that is not YAML.
func parse(data []byte) (*Config, *Error, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{Problems: []Problem{{
				Message: "empty configuration: want active_deployment and deployments",
			}}}, nil
		}
		return nil, nil, err
	}
	p := &parser{work: maxWork}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		p.addf(&next, "", "", "more than one YAML document: a configuration is one document")
	case !errors.Is(err, io.EOF):
		return nil, nil, err
	}
	root := &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		root = doc.Content[0]
	}
	c := p.config(root)
	if p.exhausted {
		return nil, &Error{Problems: []Problem{{
			Message: fmt.Sprintf("configuration too large: more than %d values once aliases are expanded", maxWork),
		}}}, nil
	}
	if len(p.problems) > 0 {
		slices.SortStableFunc(p.problems, func(a, b Problem) int { return a.Line - b.Line })
		return nil, &Error{Problems: p.problems}, nil
	}
	return c, nil, nil
}

// parser walks a YAML tree and collects its problems.
type parser struct {
	problems []Problem
	// work is what is left of the maxWork budget; exhausted is set, and
	// the walk cut short, once it runs out.
	work      int
	exhausted bool
}

// addf records a problem at node n (nil for none), in deployment dep ("" for
// none), at key path path.
func (p *parser) addf(n *yaml.Node, dep, path, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.problems = append(p.problems, Problem{Line: line, Deployment: dep, Path: path,
		Message: fmt.Sprintf(format, args...)})
}

// spend takes one unit of work from the budget and reports whether there was
// any left.
func (p *parser) spend() bool {
	p.work--
	if p.work < 0 {
		p.exhausted = true
		return false
	}
	return true
}

// nullNode stands in for a missing node. It is never modified.
var nullNode = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}

// deref follows an alias to the node it names, and counts the visit against
// the budget.
func (p *parser) deref(n *yaml.Node) *yaml.Node {
	p.spend()
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	if n == nil {
		return nullNode
	}
	return n
}

// isNull reports whether n (already dereferenced) is a null scalar: nothing,
// ~ or null.
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// isMerge reports whether the mapping key k is the merge key <<.
func isMerge(k *yaml.Node) bool {
	return k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge"
}

// describe says what n (already dereferenced) is, for "got ..." messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		if len(n.Content) == 1 {
			return "a list of 1 item"
		}
		return fmt.Sprintf("a list of %d items", len(n.Content))
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		v := n.Value
		if r := []rune(v); len(r) > 40 {
			v = string(r[:40]) + "..."
		}
		return strconv.Quote(v)
	default:
		return "an unresolved alias"
	}
}

// join appends key to a key path. A key that is not a plain name (letters,
// digits, '_' and '-') is quoted, so that paths stay one unambiguous line.
func join(path, key string) string {
	seg := key
	if !plainName(key) {
		seg = strconv.Quote(key)
	}
	if path == "" {
		return seg
	}
	return path + "." + seg
}

func plainName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validID reports whether s can be a node or coordinator id: letters, digits,
// '.', '_' and '-', not "." or "..", since ids become file names.
func validID(s string) bool {
	if s == "" || s == "." || s == ".." || len(s) > maxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// entry is one key and value of a map.
type entry struct {
	key  string
	k, v *yaml.Node
}

// mapping returns the entries of the map n in file order, with the entries
// that merge keys (<<) bring in at the merge key's place, unless the map sets
// them itself. It reports keys that are not names, keys listed twice, and a
// node that is not a map; ok is false for the latter.
func (p *parser) mapping(n *yaml.Node, dep, path string) (entries []entry, ok bool) {
	n = p.deref(n)
	if n.Kind != yaml.MappingNode {
		p.addf(n, dep, path, "want a map, got %s", describe(n))
		return nil, false
	}
	type pair struct {
		key   string
		k, v  *yaml.Node
		merge bool
	}
	pairs := make([]pair, 0, len(n.Content)/2)
	explicit := make(map[string]*yaml.Node)
	for i := 0; i+1 < len(n.Content); i += 2 {
		if !p.spend() {
			return nil, false
		}
		k, v := p.deref(n.Content[i]), n.Content[i+1]
		if isMerge(k) {
			pairs = append(pairs, pair{k: k, v: v, merge: true})
			continue
		}
		key, ok := p.key(k, dep, path)
		if !ok {
			continue
		}
		if first, dup := explicit[key]; dup {
			p.addf(k, dep, join(path, key), "key %q listed twice (first at line %d)", key, first.Line)
			continue
		}
		explicit[key] = k
		pairs = append(pairs, pair{key: key, k: k, v: v})
	}
	seen := make(map[string]bool, len(explicit))
	visited := map[*yaml.Node]bool{n: true}
	for _, pr := range pairs {
		if pr.merge {
			p.merge(pr.v, dep, path, explicit, seen, visited, &entries)
			continue
		}
		seen[pr.key] = true
		entries = append(entries, entry{key: pr.key, k: pr.k, v: pr.v})
	}
	return entries, !p.exhausted
}

// key returns the name that the mapping key k (already dereferenced) gives.
func (p *parser) key(k *yaml.Node, dep, path string) (string, bool) {
	if k.Kind != yaml.ScalarNode {
		p.addf(k, dep, path, "want a name as key, got %s", describe(k))
		return "", false
	}
	if isNull(k) || k.Value == "" {
		p.addf(k, dep, path, "empty key")
		return "", false
	}
	return k.Value, true
}

// merge appends to entries the entries that the value v of a merge key brings
// in: those of a map, or of each map of a list, earlier ones first, except
// keys already set explicitly or by an earlier merge. visited keeps a map
// that is merged twice (or into itself) from being walked again.
func (p *parser) merge(v *yaml.Node, dep, path string, explicit map[string]*yaml.Node,
	seen map[string]bool, visited map[*yaml.Node]bool, entries *[]entry) {
	v = p.deref(v)
	maps := []*yaml.Node{v}
	if v.Kind == yaml.SequenceNode {
		maps = v.Content
	}
	for _, m := range maps {
		m = p.deref(m)
		if m.Kind != yaml.MappingNode {
			p.addf(m, dep, path, "<< merges %s: want a map or a list of maps", describe(m))
			continue
		}
		if visited[m] || p.exhausted {
			continue
		}
		visited[m] = true
		var merges []*yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			if !p.spend() {
				return
			}
			k, mv := p.deref(m.Content[i]), m.Content[i+1]
			if isMerge(k) {
				merges = append(merges, mv)
				continue
			}
			key, ok := p.key(k, dep, path)
			if !ok || explicit[key] != nil || seen[key] {
				continue
			}
			seen[key] = true
			*entries = append(*entries, entry{key: key, k: k, v: mv})
		}
		// A merged map's own keys win over those it merges in turn.
		for _, mv := range merges {
			p.merge(mv, dep, path, explicit, seen, visited, entries)
		}
	}
}

// scalar returns the text of the scalar n, reporting anything else as not
// being what was wanted.
func (p *parser) scalar(n *yaml.Node, dep, path, want string) (string, *yaml.Node, bool) {
	n = p.deref(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		p.addf(n, dep, path, "want %s, got %s", want, describe(n))
		return "", n, false
	}
	return n.Value, n, true
}

// optional reports whether the value n of an optional key is null, meaning
// that the key is to be treated as absent.
func (p *parser) optional(n *yaml.Node) bool {
	return isNull(p.deref(n))
}

// unknown reports the key k as not one of known.
func (p *parser) unknown(k *yaml.Node, dep, path, key string, known []string) {
	p.addf(k, dep, path, "unknown key %q (want one of %s)", key, strings.Join(known, ", "))
}

func (p *parser) boolean(n *yaml.Node, dep, path string, dst *bool) {
	s, n, ok := p.scalar(n, dep, path, "yes or no")
	if !ok {
		return
	}
	switch strings.ToLower(s) {
	case "yes", "true", "on":
		*dst = true
	case "no", "false", "off":
		*dst = false
	default:
		p.addf(n, dep, path, "want yes or no (or true/false, on/off), got %s", describe(n))
	}
}

func (p *parser) duration(n *yaml.Node, dep, path string, dst *time.Duration) {
	s, n, ok := p.scalar(n, dep, path, "a duration")
	if !ok {
		return
	}
	d, err := parseInterval(s)
	if err != nil {
		p.addf(n, dep, path, "%v", err)
		return
	}
	*dst = d
}

func (p *parser) size(n *yaml.Node, dep, path string, dst *int64) {
	s, n, ok := p.scalar(n, dep, path, "a size")
	if !ok {
		return
	}
	v, err := parseSize(s)
	if err != nil {
		p.addf(n, dep, path, "%v", err)
		return
	}
	*dst = v
}

// rate parses a rate in bytes per second into dst: a size, optionally
// followed by "/s" ("64MiB", "64MiB/s").
func (p *parser) rate(n *yaml.Node, dep, path string, dst *int64) {
	s, n, ok := p.scalar(n, dep, path, "a size per second")
	if !ok {
		return
	}
	v, err := parseSize(strings.TrimSuffix(strings.TrimSpace(s), "/s"))
	if err != nil {
		p.addf(n, dep, path, "%v (a size per second, such as 64MiB/s)", err)
		return
	}
	*dst = v
}

// quorum parses a quorum into dst and returns its node, or nil.
func (p *parser) quorum(n *yaml.Node, dep, path string, dst *Quorum) *yaml.Node {
	s, n, ok := p.scalar(n, dep, path, "one, quorum, all or a number")
	if !ok {
		return nil
	}
	q, err := parseQuorum(s)
	if err != nil {
		p.addf(n, dep, path, "%v", err)
		return nil
	}
	*dst = q
	return n
}

// positive parses a whole number from 1 to limit into dst.
func (p *parser) positive(n *yaml.Node, dep, path string, limit int, dst *int) {
	s, n, ok := p.scalar(n, dep, path, "a positive whole number")
	if !ok {
		return
	}
	v, err := strconv.Atoi(s)
	switch {
	case !isDigits(s) || err == nil && v <= 0:
		p.addf(n, dep, path, "want a positive whole number, got %s", describe(n))
	case err != nil || v > limit:
		p.addf(n, dep, path, "%s is too large (at most %d)", s, limit)
	default:
		*dst = v
	}
}

// host parses a host name or IP address.
func (p *parser) host(n *yaml.Node, dep, path string) (string, bool) {
	s, n, ok := p.scalar(n, dep, path, "a host name")
	if !ok {
		return "", false
	}
	if n.ShortTag() != "!!str" || s == "" ||
		strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		p.addf(n, dep, path, "host %s is not a host name or IP address", describe(n))
		return "", false
	}
	return s, true
}

// port parses a port number; what names it in messages ("binary port").
func (p *parser) port(n *yaml.Node, dep, path, what string) (int, bool) {
	s, n, ok := p.scalar(n, dep, path, what)
	if !ok {
		return 0, false
	}
	if !isDigits(s) {
		p.addf(n, dep, path, "%s %s is not a number", what, describe(n))
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > 65535 {
		p.addf(n, dep, path, "%s %s out of range 1-65535", what, s)
		return 0, false
	}
	return v, true
}

// node parses a node's [HOST, BINARY_PORT] or [HOST, HTTP_PORT, BINARY_PORT].
func (p *parser) node(n *yaml.Node, dep, path string) (Node, bool) {
	n = p.deref(n)
	if n.Kind != yaml.SequenceNode || len(n.Content) < 2 || len(n.Content) > 3 {
		p.addf(n, dep, path, "want %s, got %s", nodeForms, describe(n))
		return Node{}, false
	}
	var node Node
	host, ok := p.host(n.Content[0], dep, path)
	node.Host = host
	if len(n.Content) == 3 {
		port, portOK := p.port(n.Content[1], dep, path, "HTTP port")
		node.HTTPPort, ok = port, ok && portOK
	}
	port, portOK := p.port(n.Content[len(n.Content)-1], dep, path, "binary port")
	node.BinaryPort, ok = port, ok && portOK
	if ok && node.HTTPPort == node.BinaryPort {
		p.addf(n, dep, path, "HTTP port and binary port are both %d", port)
		ok = false
	}
	return node, ok
}

// nodeInfo is a parsed node and where it was written.
type nodeInfo struct {
	Node
	at   *yaml.Node // the node's key
	path string
}

// depInfo is a parsed deployment and what the checks across deployments
// need to know about it.
type depInfo struct {
	d     *Deployment
	at    *yaml.Node // the deployment's key
	nodes []nodeInfo // the nodes that parsed, in file order
}

// socket is a port that a node or coordinator listens on.
type socket struct {
	host  string // as written
	port  int
	kind  string // "binary port", "HTTP port" or "port"
	owner string // `node "n1"` or `coordinator "c1"`
	id    string // the node or coordinator id
	dep   string // the deployment of a node, "" for a coordinator
	line  int
}

// socketKey identifies a socket by host and port; the host is lower case,
// since host names are not case-sensitive.
type socketKey struct {
	host string
	port int
}

func (s socket) key() socketKey { return socketKey{strings.ToLower(s.host), s.port} }

// nodeSockets returns the sockets of a node of deployment dep.
func nodeSockets(n nodeInfo, dep string) []socket {
	owner := fmt.Sprintf("node %q", n.ID)
	out := []socket{{n.Host, n.BinaryPort, "binary port", owner, n.ID, dep, n.at.Line}}
	if n.HTTPPort != 0 {
		out = append(out, socket{n.Host, n.HTTPPort, "HTTP port", owner, n.ID, dep, n.at.Line})
	}
	return out
}

// clash reports that s is on the same host and port as prev.
func (p *parser) clash(at *yaml.Node, path string, s, prev socket) {
	where := ""
	if prev.dep != s.dep {
		where = " in the coordinators"
		if prev.dep != "" {
			where = fmt.Sprintf(" in deployment %q", prev.dep)
		}
	}
	p.addf(at, s.dep, path, "%s %d on host %q is already the %s of %s%s (line %d)",
		s.kind, s.port, s.host, prev.kind, prev.owner, where, prev.line)
}

// deployment parses the deployment name, whose key is k and value v.
func (p *parser) deployment(name string, k, v *yaml.Node) *depInfo {
	path := join("deployments", name)
	d := &Deployment{
		Name:                     name,
		ReadRepair:               true,
		BackgroundRepair:         true,
		BackgroundRepairInterval: defaultBackgroundRepairInterval,
		RequestTimeout:           defaultRequestTimeout,
		MaxValueSize:             defaultMaxValueSize,
		MaxTimestampAhead:        defaultMaxTimestampAhead,
		MaxTTL:                   defaultMaxTTL,
		RepairBandwidth:          defaultRepairBandwidth,
		BucketsPerKey:            1,
		PointsPerBucket:          ring.DefaultPointsPerBucket,
		Limits:                   DefaultLimits,
	}
	info := &depInfo{d: d, at: k}
	bucketsPath := join(path, "buckets")
	if p.optional(v) {
		p.addf(k, name, bucketsPath, "missing: a deployment needs at least one bucket")
		return info
	}
	entries, ok := p.mapping(v, name, path)
	if !ok {
		return info
	}
	var writeQuorum, readQuorum, bucketsKey, bucketsValue *yaml.Node
	hashOK := true
	for _, e := range entries {
		kp := join(path, e.key)
		if e.key == "buckets" {
			bucketsKey, bucketsValue = e.k, e.v
			continue
		}
		if !slices.Contains(deploymentKeys, e.key) {
			p.unknown(e.k, name, kp, e.key, deploymentKeys)
			continue
		}
		if p.optional(e.v) {
			continue // the default
		}
		switch e.key {
		case "read_repair":
			p.boolean(e.v, name, kp, &d.ReadRepair)
		case "background_repair":
			p.boolean(e.v, name, kp, &d.BackgroundRepair)
		case "background_repair_interval":
			p.duration(e.v, name, kp, &d.BackgroundRepairInterval)
		case "write_quorum":
			writeQuorum = p.quorum(e.v, name, kp, &d.WriteQuorum)
		case "read_quorum":
			readQuorum = p.quorum(e.v, name, kp, &d.ReadQuorum)
		case "request_timeout":
			p.duration(e.v, name, kp, &d.RequestTimeout)
		case "max_value_size":
			p.size(e.v, name, kp, &d.MaxValueSize)
		case "max_timestamp_ahead":
			p.duration(e.v, name, kp, &d.MaxTimestampAhead)
		case "max_ttl":
			p.duration(e.v, name, kp, &d.MaxTTL)
		case "tombstone_grace":
			p.duration(e.v, name, kp, &d.TombstoneGrace)
		case "repair_bandwidth":
			p.rate(e.v, name, kp, &d.RepairBandwidth)
		case "limits":
			p.limits(e.v, name, kp, &d.Limits)
		case "hash":
			before := len(p.problems)
			p.hash(e.v, name, kp, d)
			hashOK = len(p.problems) == before
		}
	}
	if d.TombstoneGrace == 0 {
		d.TombstoneGrace = defaultTombstoneGraceIntervals * d.BackgroundRepairInterval
	}
	if bucketsKey == nil {
		p.addf(k, name, bucketsPath, "missing: a deployment needs at least one bucket")
		return info
	}
	complete := p.buckets(bucketsKey, bucketsValue, name, bucketsPath, info)
	if !complete || !hashOK || len(d.Buckets) == 0 {
		return info
	}
	// Only now is the smallest replica set known exactly.
	least := d.MinReplicas()
	for _, q := range []struct {
		key string
		q   Quorum
		at  *yaml.Node
	}{{"write_quorum", d.WriteQuorum, writeQuorum}, {"read_quorum", d.ReadQuorum, readQuorum}} {
		if q.at != nil && q.q.Kind == QuorumCount && q.q.N > least {
			p.addf(q.at, name, join(path, q.key),
				"%s %d is more than the %d replicas that some keys have (buckets_per_key %d)",
				q.key, q.q.N, least, d.BucketsPerKey)
		}
	}
	return info
}

// hash parses a deployment's hash settings into d.
func (p *parser) hash(n *yaml.Node, dep, path string, d *Deployment) {
	entries, ok := p.mapping(n, dep, path)
	if !ok {
		return
	}
	for _, e := range entries {
		kp := join(path, e.key)
		switch {
		case !slices.Contains(hashKeys, e.key):
			p.unknown(e.k, dep, kp, e.key, hashKeys)
		case p.optional(e.v):
			// the default
		case e.key == "buckets_per_key":
			p.positive(e.v, dep, kp, math.MaxInt, &d.BucketsPerKey)
		case e.key == "points_per_bucket":
			p.positive(e.v, dep, kp, maxPointsPerBucket, &d.PointsPerBucket)
		}
	}
}

// auth parses the auth section into c.AuthTokens and c.Auth.
func (p *parser) auth(n *yaml.Node, path string, c *Config) {
	entries, ok := p.mapping(n, "", path)
	if !ok {
		return
	}
	for _, e := range entries {
		kp := join(path, e.key)
		if e.key != "tokens" {
			p.unknown(e.k, "", kp, e.key, authKeys)
			continue
		}
		if p.optional(e.v) {
			continue
		}
		tokens, ok := p.mapping(e.v, "", kp)
		if !ok {
			continue
		}
		seen := map[[32]byte]string{}
		for _, te := range tokens {
			tp := join(kp, te.key)
			fields, ok := p.mapping(te.v, "", tp)
			if !ok {
				continue
			}
			tok := auth.Token{Name: te.key}
			var haveHash, haveRole bool
			for _, f := range fields {
				fp := join(tp, f.key)
				switch f.key {
				case "sha256":
					s, sn, ok := p.scalar(f.v, "", fp, "the hex SHA-256 of a token")
					if !ok {
						continue
					}
					h, err := auth.ParseHash(s)
					if err != nil {
						p.addf(sn, "", fp, "%v", err)
						continue
					}
					if other, dup := seen[h]; dup {
						p.addf(sn, "", fp, "the same token as %q", other)
						continue
					}
					seen[h] = te.key
					tok.Hash, haveHash = h, true
				case "role":
					s, sn, ok := p.scalar(f.v, "", fp, "read, write or admin")
					if !ok {
						continue
					}
					r, err := auth.ParseRole(s)
					if err != nil {
						p.addf(sn, "", fp, "%v", err)
						continue
					}
					tok.Role, haveRole = r, true
				default:
					p.unknown(f.k, "", fp, f.key, tokenKeys)
				}
			}
			if !haveHash || !haveRole {
				p.addf(te.k, "", tp, "a token needs sha256 and role")
				continue
			}
			c.AuthTokens = append(c.AuthTokens, tok)
		}
	}
	c.Auth = auth.New(c.AuthTokens)
}

// tls parses the tls section; it returns nil when the section is not
// valid, after reporting why.
func (p *parser) tls(n *yaml.Node, path string) *TLSFiles {
	entries, ok := p.mapping(n, "", path)
	if !ok {
		return nil
	}
	var f TLSFiles
	fields := map[string]*string{"ca": &f.CA, "cert": &f.Cert, "key": &f.Key}
	good := true // no problem reported yet
	for _, e := range entries {
		kp := join(path, e.key)
		dst, isPath := fields[e.key]
		switch {
		case p.optional(e.v) && (isPath || slices.Contains(TLSRoles, e.key)):
			// left out
		case isPath:
			good = p.pemPath(e.v, kp, dst) && good
		case slices.Contains(TLSRoles, e.key):
			pair, ok := p.keyPair(e.v, kp)
			good = ok && good
			if f.Roles == nil {
				f.Roles = map[string]KeyPair{}
			}
			f.Roles[e.key] = pair
		default:
			p.unknown(e.k, "", kp, e.key, tlsKeys)
		}
	}
	var missing []string
	for _, k := range []string{"ca", "cert", "key"} {
		if *fields[k] == "" {
			missing = append(missing, k)
		}
	}
	if !good {
		return nil
	}
	if len(missing) > 0 {
		p.addf(n, "", path, "missing %s: the tls section needs ca, cert and key", strings.Join(missing, ", "))
		return nil
	}
	return &f
}

// keyPair parses a role's certificate in the tls section: {cert, key}, both
// required.
func (p *parser) keyPair(n *yaml.Node, path string) (KeyPair, bool) {
	entries, ok := p.mapping(n, "", path)
	if !ok {
		return KeyPair{}, false
	}
	var kp KeyPair
	fields := map[string]*string{"cert": &kp.Cert, "key": &kp.Key}
	good := true
	for _, e := range entries {
		ep := join(path, e.key)
		if dst, ok := fields[e.key]; ok {
			good = p.pemPath(e.v, ep, dst) && good
		} else {
			p.unknown(e.k, "", ep, e.key, keyPairKeys)
			good = false
		}
	}
	if good && (kp.Cert == "" || kp.Key == "") {
		p.addf(n, "", path, "a role's certificate needs both cert and key")
		good = false
	}
	return kp, good
}

// pemPath parses the path of a PEM file into dst; it reports false, after
// reporting why, when n is not a non-empty string.
func (p *parser) pemPath(n *yaml.Node, path string, dst *string) bool {
	s, sn, ok := p.scalar(n, "", path, "the path of a PEM file")
	if ok && s == "" {
		p.addf(sn, "", path, "empty: want the path of a PEM file")
	}
	*dst = s
	return ok && s != ""
}

// limits parses a deployment's limits into dst.
func (p *parser) limits(n *yaml.Node, dep, path string, dst *Limits) {
	entries, ok := p.mapping(n, dep, path)
	if !ok {
		return
	}
	for _, e := range entries {
		kp := join(path, e.key)
		switch {
		case !slices.Contains(limitsKeys, e.key):
			p.unknown(e.k, dep, kp, e.key, limitsKeys)
		case p.optional(e.v):
			// the default
		case e.key == "max_connections":
			p.positive(e.v, dep, kp, maxLimit, &dst.MaxConnections)
		case e.key == "max_requests_in_flight":
			p.positive(e.v, dep, kp, maxLimit, &dst.MaxRequestsInFlight)
		case e.key == "max_requests_per_connection":
			p.positive(e.v, dep, kp, maxLimit, &dst.MaxRequestsPerConnection)
		case e.key == "max_bytes_in_flight":
			p.size(e.v, dep, kp, &dst.MaxBytesInFlight)
		case e.key == "header_timeout":
			p.duration(e.v, dep, kp, &dst.HeaderTimeout)
		case e.key == "body_timeout":
			p.duration(e.v, dep, kp, &dst.BodyTimeout)
		case e.key == "idle_timeout":
			p.duration(e.v, dep, kp, &dst.IdleTimeout)
		}
	}
}

// maxLimit bounds the counts of the limits section.
const maxLimit = 1 << 20

// buckets parses a deployment's buckets into info, checking that no node is
// listed twice and that no two nodes share an address. It reports whether
// every bucket and node parsed, so that the bucket sizes are the intended
// ones.
func (p *parser) buckets(k, v *yaml.Node, dep, path string, info *depInfo) (complete bool) {
	if p.optional(v) {
		p.addf(k, dep, path, "no buckets: a deployment needs at least one")
		return false
	}
	entries, ok := p.mapping(v, dep, path)
	if !ok {
		return false
	}
	if len(entries) == 0 {
		p.addf(k, dep, path, "no buckets: a deployment needs at least one")
		return false
	}
	complete = true
	type place struct {
		bucket string
		line   int
	}
	ids := make(map[string]place) // where each node id was first listed
	sockets := make(map[socketKey]socket)
	for _, e := range entries {
		bp := join(path, e.key)
		if p.optional(e.v) {
			p.addf(e.k, dep, bp, "empty bucket: a bucket needs at least one node")
			complete = false
			continue
		}
		nodes, ok := p.mapping(e.v, dep, bp)
		if !ok {
			complete = false
			continue
		}
		if len(nodes) == 0 {
			p.addf(e.k, dep, bp, "empty bucket: a bucket needs at least one node")
			complete = false
			continue
		}
		b := Bucket{Name: e.key}
		for _, ne := range nodes {
			np := join(bp, ne.key)
			node, ok := p.node(ne.v, dep, np)
			if !validID(ne.key) {
				p.addf(ne.k, dep, np, "node id %q: want letters, digits, '.', '_' and '-' only (at most %d), not . or ..",
					ne.key, maxIDLength)
				ok = false
			}
			if prev, dup := ids[ne.key]; dup {
				p.addf(ne.k, dep, np, "node %q listed twice (also in bucket %q at line %d)",
					ne.key, prev.bucket, prev.line)
				ok = false
			} else {
				ids[ne.key] = place{b.Name, ne.k.Line}
			}
			if !ok {
				complete = false
				continue
			}
			node.ID, node.Bucket = ne.key, b.Name
			ni := nodeInfo{Node: node, at: ne.k, path: np}
			for _, s := range nodeSockets(ni, dep) {
				if prev, taken := sockets[s.key()]; taken {
					p.clash(ne.k, np, s, prev)
					continue
				}
				sockets[s.key()] = s
			}
			info.nodes = append(info.nodes, ni)
			b.Nodes = append(b.Nodes, node)
		}
		info.d.Buckets = append(info.d.Buckets, b)
	}
	return complete
}

// config walks the whole document and returns the configuration it
// describes, which is complete only when no problem was found.
func (p *parser) config(root *yaml.Node) *Config {
	c := &Config{Deployments: make(map[string]*Deployment)}
	root = p.deref(root)
	if isNull(root) {
		p.addf(root, "", "", "empty configuration: want active_deployment and deployments")
		return c
	}
	entries, ok := p.mapping(root, "", "")
	if !ok {
		return c
	}
	var (
		master, active, target         string
		masterAt, activeAt, targetAt   *yaml.Node
		deploymentsAt                  *yaml.Node
		deploymentsOK, coordinatorsKey bool
		deps                           []*depInfo
		coordinatorsAt                 []*yaml.Node
	)
	for _, e := range entries {
		kp := join("", e.key)
		switch e.key {
		case "master_coordinator":
			if !p.optional(e.v) {
				master, masterAt, _ = p.scalar(e.v, "", kp, "a coordinator id")
			}
		case "auth":
			if !p.optional(e.v) {
				p.auth(e.v, kp, c)
			}
		case "tls":
			if !p.optional(e.v) {
				c.TLS = p.tls(e.v, kp)
			}
		case "coordinators":
			coordinatorsKey = true
			if !p.optional(e.v) {
				coordinatorsAt = p.coordinators(e.v, kp, c)
			}
		case "active_deployment":
			activeAt = e.k
			if !p.optional(e.v) {
				s, n, ok := p.scalar(e.v, "", kp, "the name of a deployment")
				active, activeAt = s, n
				if ok && s == "" {
					p.addf(n, "", kp, "empty: want the name of the deployment that serves the keys")
				}
			} else {
				p.addf(e.k, "", kp, "missing value: want the name of the deployment that serves the keys")
			}
		case "target_deployment":
			if !p.optional(e.v) {
				target, targetAt, _ = p.scalar(e.v, "", kp, "the name of a deployment")
			}
		case "deployments":
			deploymentsAt = e.k
			if p.optional(e.v) {
				p.addf(e.k, "", kp, "no deployments: want at least one")
				continue
			}
			des, ok := p.mapping(e.v, "", kp)
			if !ok {
				continue
			}
			deploymentsOK = true
			if len(des) == 0 {
				p.addf(e.k, "", kp, "no deployments: want at least one")
			}
			for _, de := range des {
				info := p.deployment(de.key, de.k, de.v)
				deps = append(deps, info)
				if _, dup := c.Deployments[de.key]; !dup {
					c.order = append(c.order, de.key)
				}
				c.Deployments[de.key] = info.d
			}
		default:
			p.unknown(e.k, "", kp, e.key, topKeys)
		}
	}
	if activeAt == nil {
		p.addf(root, "", "active_deployment", "missing: want the name of the deployment that serves the keys")
	}
	if deploymentsAt == nil {
		p.addf(root, "", "deployments", "missing: want at least one deployment")
	}
	if active != "" && deploymentsOK {
		if c.Active = c.Deployments[active]; c.Active == nil {
			p.addf(activeAt, "", "active_deployment", "unknown deployment %q", active)
		}
	}
	if target != "" && deploymentsOK {
		switch c.Target = c.Deployments[target]; {
		case c.Target == nil:
			p.addf(targetAt, "", "target_deployment", "unknown deployment %q", target)
		case target == active:
			p.addf(targetAt, "", "target_deployment",
				"is the active deployment %q: a migration needs a different target", target)
			c.Target = nil
		}
	}
	if master != "" && !slices.ContainsFunc(c.Coordinators, func(co Coordinator) bool { return co.ID == master }) {
		if !coordinatorsKey {
			p.addf(masterAt, "", "master_coordinator", "unknown coordinator %q (no coordinators are listed)", master)
		} else {
			p.addf(masterAt, "", "master_coordinator", "unknown coordinator %q", master)
		}
	}
	c.MasterCoordinator = master
	p.crossChecks(c, deps, coordinatorsAt)
	if len(p.problems) == 0 && !p.exhausted {
		p.buildRings(deps)
	}
	return c
}

// coordinators parses the coordinators into c.Coordinators and returns the
// key of each, parallel to it.
func (p *parser) coordinators(n *yaml.Node, path string, c *Config) []*yaml.Node {
	entries, ok := p.mapping(n, "", path)
	if !ok {
		return nil
	}
	var at []*yaml.Node
	for _, e := range entries {
		cp := join(path, e.key)
		ok := true
		if !validID(e.key) {
			p.addf(e.k, "", cp, "coordinator id %q: want letters, digits, '.', '_' and '-' only (at most %d), not . or ..",
				e.key, maxIDLength)
			ok = false
		}
		v := p.deref(e.v)
		if v.Kind != yaml.SequenceNode || len(v.Content) != 2 {
			p.addf(v, "", cp, "want [HOST, PORT], got %s", describe(v))
			continue
		}
		host, hostOK := p.host(v.Content[0], "", cp)
		port, portOK := p.port(v.Content[1], "", cp, "port")
		if ok && hostOK && portOK {
			c.Coordinators = append(c.Coordinators, Coordinator{ID: e.key, Host: host, Port: port})
			at = append(at, e.k)
		}
	}
	return at
}

// crossChecks checks what involves more than one deployment, or the
// coordinators and the nodes together: a node keeps its address across
// deployments, and nothing that runs at the same time (the coordinators and
// the nodes of the active and target deployments) shares an address.
func (p *parser) crossChecks(c *Config, deps []*depInfo, coordinatorsAt []*yaml.Node) {
	first := make(map[string]struct {
		n   nodeInfo
		dep string
	})
	for _, di := range deps {
		for _, n := range di.nodes {
			f, ok := first[n.ID]
			if !ok {
				first[n.ID] = struct {
					n   nodeInfo
					dep string
				}{n, di.d.Name}
				continue
			}
			if f.dep == di.d.Name {
				continue
			}
			if !strings.EqualFold(f.n.Host, n.Host) || f.n.HTTPPort != n.HTTPPort || f.n.BinaryPort != n.BinaryPort {
				p.addf(n.at, di.d.Name, n.path,
					"node %q is %s here but %s in deployment %q (line %d): a node keeps its address across deployments",
					n.ID, nodeForm(n.Node), nodeForm(f.n.Node), f.dep, f.n.at.Line)
			}
		}
	}

	// Everything that runs at once: coordinators, then active and target
	// nodes. A node in both deployments is one process, checked once.
	running := make(map[socketKey]socket)
	for i, co := range c.Coordinators {
		s := socket{co.Host, co.Port, "port", fmt.Sprintf("coordinator %q", co.ID), co.ID, "", coordinatorsAt[i].Line}
		if prev, taken := running[s.key()]; taken {
			p.clash(coordinatorsAt[i], join("coordinators", co.ID), s, prev)
			continue
		}
		running[s.key()] = s
	}
	byName := make(map[string]*depInfo, len(deps))
	for _, di := range deps {
		byName[di.d.Name] = di
	}
	for _, d := range []*Deployment{c.Active, c.Target} {
		if d == nil {
			continue
		}
		for _, n := range byName[d.Name].nodes {
			for _, s := range nodeSockets(n, d.Name) {
				prev, taken := running[s.key()]
				switch {
				case !taken:
					running[s.key()] = s
				case prev.dep == d.Name:
					// Within one deployment, buckets has reported it.
				case prev.dep != "" && prev.id == n.ID:
					// The same node in both deployments.
				default:
					p.clash(n.at, n.path, s, prev)
				}
			}
		}
	}
}

// nodeForm formats a node's address as the configuration writes it.
func nodeForm(n Node) string {
	if n.HTTPPort == 0 {
		return fmt.Sprintf("[%s, %d]", n.Host, n.BinaryPort)
	}
	return fmt.Sprintf("[%s, %d, %d]", n.Host, n.HTTPPort, n.BinaryPort)
}

// buildRings gives every deployment its ring, unless that would take more
// than maxRingPoints points in all.
func (p *parser) buildRings(deps []*depInfo) {
	total := 0
	for _, di := range deps {
		total += len(di.d.Buckets) * di.d.PointsPerBucket
		if total > maxRingPoints {
			p.addf(di.at, di.d.Name, join("deployments", di.d.Name),
				"the rings of the deployments need more than %d points in all: lower hash.points_per_bucket",
				maxRingPoints)
			return
		}
	}
	for _, di := range deps {
		names := make([]string, len(di.d.Buckets))
		for i, b := range di.d.Buckets {
			names[i] = b.Name
		}
		di.d.Ring = ring.New(names, di.d.PointsPerBucket)
	}
}
