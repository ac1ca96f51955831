package config

// SamePlacement reports whether a and b place every key on the same
// replicas with the same quorums: the same active and target deployments,
// each with the same buckets of the same nodes (by id, in order), the same
// buckets_per_key, points per bucket and quorums. Addresses, other
// settings, tokens and TLS are not placement.
func SamePlacement(a, b *Config) bool {
	return samePlacement(a.Active, b.Active) && samePlacement(a.Target, b.Target)
}

func samePlacement(a, b *Deployment) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Name != b.Name || a.BucketsPerKey != b.BucketsPerKey || a.PointsPerBucket != b.PointsPerBucket ||
		a.WriteQuorum != b.WriteQuorum || a.ReadQuorum != b.ReadQuorum || len(a.Buckets) != len(b.Buckets) {
		return false
	}
	for i, ba := range a.Buckets {
		bb := b.Buckets[i]
		if ba.Name != bb.Name || len(ba.Nodes) != len(bb.Nodes) {
			return false
		}
		for j := range ba.Nodes {
			if ba.Nodes[j].ID != bb.Nodes[j].ID {
				return false
			}
		}
	}
	return true
}

// AddedNodes returns the nodes of next's running cluster (Config.Nodes)
// that prev does not name, or names at another binary address: the nodes
// that a process following next may find still starting. With no prev, it
// returns none.
func AddedNodes(prev, next *Config) []Node {
	if prev == nil || next == nil {
		return nil
	}
	var out []Node
	for _, nd := range next.Nodes() {
		if was, _, ok := prev.Node(nd.ID); ok && was.BinaryAddr() == nd.BinaryAddr() {
			continue
		}
		out = append(out, nd)
	}
	return out
}
