// Package config reads Tako's configuration: the YAML file (or its JSON
// form, JSON being YAML) that every node, proxy and coordinator is given, and
// that says which nodes exist, how they are grouped into buckets, and how keys
// are replicated over them.
//
// # Format
//
//	master_coordinator: c1            # optional; must name a coordinator
//	coordinators:                     # optional; id -> [HOST, PORT]
//	  c1: [tako-coordinator-1.example.com, 4712]
//	auth:                             # optional; without it, no token is needed
//	  tokens:                         # name -> the token's SHA-256 and its role
//	    app: {sha256: 9f2c..., role: write}   # read | write | admin (tako token makes one)
//	tls:                              # optional; without it, the binary protocol is plain TCP
//	  ca: /etc/tako/ca.pem            # the cluster CA's certificate: peers must present one it signed
//	  cert: /etc/tako/tako.pem        # this process's certificate (tako certs makes them)
//	  key: /etc/tako/tako-key.pem     # its key; relative paths are relative to the working directory
//	  node: {cert: node.pem, key: node-key.pem}   # optional: a role's own certificate (node,
//	                                  # proxy, coordinator, client), presented instead of cert
//	active_deployment: cluster        # required; must name a deployment
//	target_deployment: next           # optional; live migration from active to target
//	deployments:                      # required, at least one
//	  cluster:
//	    read_repair: yes                       # default yes
//	    background_repair: yes                 # default yes
//	    background_repair_interval: 1d 0:00:00 # default 24h; also 30s, 5m, 2h, 1d, 1d12h, 86400
//	    write_quorum: quorum                   # one | quorum | all | N (default quorum)
//	    read_quorum: quorum                    # one | quorum | all | N (default quorum)
//	    request_timeout: 2s                    # default 2s
//	    max_value_size: 64MiB                  # default 64 MiB; B, KB, KiB, MB, MiB, GB, GiB
//	    limits:                                # what keeps one client from starving the others
//	        max_connections: 4096              # per listener; at the limit an idle HTTP connection is evicted
//	        max_requests_in_flight: 1024       # HTTP requests at once; beyond: 503 + Retry-After
//	        max_requests_per_connection: 256   # binary protocol requests under way per connection
//	        max_bytes_in_flight: 256MiB        # request bytes held at once, HTTP and binary; beyond: wait 1 s, then 503 / CodeOverloaded
//	        header_timeout: 10s                # to send a request's headers (slowloris)
//	        body_timeout: 1m                   # to send a whole request
//	        idle_timeout: 2m                   # a keep-alive connection between requests
//	    max_timestamp_ahead: 10m               # default 10m
//	    max_ttl: 3650d                         # the longest X-TTL a write may ask for; default 3650d
//	    tombstone_grace: 10d                   # default 10 × background_repair_interval
//	    repair_bandwidth: 64MiB/s              # what one node receives by repair and refill; default 64 MiB/s
//	    hash:
//	      buckets_per_key: 2                   # default 1
//	      points_per_bucket: 120               # default ring.DefaultPointsPerBucket
//	    buckets:
//	      b1:
//	        n1: [HOST, HTTP_PORT, BINARY_PORT] # a node with an HTTP interface
//	        n2: [HOST, BINARY_PORT]            # a node with the binary port only
//
// Booleans are yes/no, true/false or on/off, in any case. Durations are
// written as in the original Tako ("1d 0:00:00", "2d", "0:30:00"), as Go
// durations that may also use a d (day) unit ("30s", "1h30m", "1d12h"), or as
// a bare number of seconds; every duration must be positive. Sizes are a
// number of bytes, or a number with one of the units B, KB (1000), KiB (1024),
// MB, MiB, GB, GiB, in any case, optionally separated by a space; every size
// must be positive. Names (deployments, buckets, nodes, coordinators) are the
// text of their mapping keys, so `1:` names the bucket or node "1". Node and
// coordinator ids are limited to letters, digits, '.', '_' and '-', since
// they end up in file names. An optional key whose value is null (written
// as nothing, ~ or null) is treated as absent; an empty target_deployment or
// master_coordinator means none. YAML anchors, aliases and merge keys (<<)
// may be used; each document holds exactly one configuration.
//
// # Semantics
//
// A deployment's ring (package ring) is built over its bucket names in file
// order with points_per_bucket points each. A key's replicas in a deployment
// are every node of the min(buckets_per_key, number of buckets) buckets that
// the ring gives it, its primary bucket first. During a live migration
// (target_deployment set) a key's replicas are the union of its replicas in
// the active and in the target deployment. A node follows the settings of the
// deployment that names it: the target's when both do. A node may appear in
// several deployments only with the same address, which is how a migration
// keeps it.
//
// # Errors
//
// Parse and Load check everything and report every problem they find, not
// just the first: unknown keys, wrong types, missing or dangling names, bad
// ports, durations, sizes and quorums, a node listed twice, two nodes on one
// address, a quorum larger than the replicas some key has. The problems come
// back as an *Error (use errors.As), in file order, each naming the line, the
// key path (like deployments.cluster.buckets.b1.n1) and the deployment. A file
// that is not YAML at all gives a plain wrapped error instead.
//
// A *Config is immutable once returned and safe for concurrent use; callers
// must not modify it, its slices or its maps.
package config
