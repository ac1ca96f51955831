package coord

import (
	"time"

	"github.com/takodb/tako/internal/config"
)

// Placement is where a key lives: the union of its replicas in the active
// and target deployments, and for each deployment the members that count
// towards its quorum.
type Placement struct {
	// Nodes are the key's replicas, active deployment's first.
	Nodes []config.Node
	// Groups are the active deployment's quorum group, then, during a
	// migration, the target's.
	Groups []Group
	// Timeout bounds one replica's answer: the longest request_timeout of
	// the deployments.
	Timeout time.Duration
}

// Group is one deployment's replicas of a key and its quorums.
type Group struct {
	// Members are indexes into Placement.Nodes.
	Members []int
	// WriteNeed and ReadNeed are how many members a write and a read need.
	WriteNeed, ReadNeed int
	// Deployment is the deployment's name.
	Deployment string
}

// SettleNeed is how many of the group's replicas hold the version a
// quorum read returns before it answers (settle, NeedSettled):
//   - replicas − read quorum + 1, so that every later read quorum meets
//     one of them;
//   - the write quorum, but never every replica (one replica down must not
//     make a key unreadable for good after a write that failed half-way),
//     and at least two of them: so that the version, like an acknowledged
//     write, survives the loss of one replica's disk (with one copy, the
//     lost disk could be the only one that had it: with 2 replicas and
//     the default quorums, a read could return a version only one replica
//     held, that replica lose its disk, and the next read return the
//     version before).
//
// 2 of 2 replicas with the defaults (a read that finds a version on one
// writes it to the other, which answered the same read), 2 of 3, 3 of 4.
func (g Group) SettleNeed() int {
	n := len(g.Members)
	return max(n-g.ReadNeed+1, min(g.WriteNeed, n-1), min(2, n))
}

// SeenNeed is how many of the group's replicas must answer so that their
// answers show every version a client may have seen: an acknowledged write
// is on the write quorum, a version a quorum read returned on SettleNeed,
// so every such version is on at least min(write quorum, SettleNeed)
// replicas, and replicas − min(write quorum, SettleNeed) + 1 answers meet
// every such set. Never more than the read quorum (read and write quorums
// intersect, and SettleNeed meets every read quorum). The first round of a
// write that the cluster stamps needs that many (NeedStamp): 1 of 2
// replicas with the defaults, 2 of 3.
func (g Group) SeenNeed() int {
	n := len(g.Members)
	return n - min(g.WriteNeed, g.SettleNeed()) + 1
}

// RecoveringNeed is how many of the group's replicas other than a
// recovering one (a replica that may have lost data: its disk was lost,
// or it comes back to ranges it did not hold) must answer before that
// replica's read-through answer counts: SeenNeed, so that it never hands
// on a version older than one a client has seen, but never more than the
// other replicas (memberRecovers: the recovering replica is one of the
// group's). 2 of the other 2 with 3 replicas and the defaults, 1 of 1
// with 2.
func (g Group) RecoveringNeed(memberRecovers bool) int {
	others := len(g.Members)
	if memberRecovers {
		others--
	}
	return max(min(g.SeenNeed(), others), 0)
}

// PlacementOf returns where key lives under cfg.
func PlacementOf(cfg *config.Config, key []byte) Placement {
	var p Placement
	p.Nodes = cfg.Replicas(nil, key)
	p.Timeout = cfg.Active.RequestTimeout
	for _, d := range []*config.Deployment{cfg.Active, cfg.Target} {
		if d == nil {
			continue
		}
		members := d.Replicas(nil, key)
		g := Group{Deployment: d.Name}
		for _, m := range members {
			for i, nd := range p.Nodes {
				if nd.ID == m.ID {
					g.Members = append(g.Members, i)
					break
				}
			}
		}
		g.WriteNeed = d.WriteQuorum.Required(len(members))
		g.ReadNeed = d.ReadQuorum.Required(len(members))
		p.Groups = append(p.Groups, g)
		if d.RequestTimeout > p.Timeout {
			p.Timeout = d.RequestTimeout
		}
	}
	return p
}

// QuorumReads reports whether the active deployment's read quorum is a
// majority of the key's replicas (the default): only then do reads
// promise never to go back in time, and does a read put what it returns
// on enough replicas first (settle, NeedSettled), which then needs no
// more replicas than the read itself. With a smaller read quorum an
// operator chose availability over that promise, and a read must not
// need more replicas than its read quorum.
func (p Placement) QuorumReads() bool {
	g := p.Groups[0]
	return 2*g.ReadNeed > len(g.Members)
}

// Need is what a request needs of a key's replicas.
type Need int

const (
	// NeedWrite is the write quorum of every deployment (active and,
	// during a migration, target), so that a write is on a quorum of the
	// target's replicas when the target is promoted.
	NeedWrite Need = iota
	// NeedRead is the read quorum of every deployment (active and, during
	// a migration, target). The active's alone would not do: once the
	// target is promoted, the nodes that have learnt it acknowledge writes
	// on the target's write quorum alone, while a coordinator that has not
	// learnt it yet still reads by the migration's configuration; only
	// the target's read quorum meets those writes (the simulator found a
	// read, and a write stamped below, missing one: seed 72577). A target
	// replica still being filled (recovering) answers by reading the key
	// through from the other replicas first.
	NeedRead
	// NeedSettled is Group.SettleNeed of every deployment (active and,
	// during a migration, target): where a read puts the version it
	// returns before it answers (settle), so that every later read quorum
	// meets one of them and sees it, even after one of them lost its
	// disk, and also once the target is promoted (settled in the active
	// deployment only, a version a read returned during a migration could
	// be missed by the reads after the promotion: the simulator found
	// such a read going back in time). Like a write, a read that must
	// settle during a migration needs the target's replicas to take it.
	NeedSettled
	// NeedStamp is Group.SeenNeed of every deployment: what the first
	// round of a write that the cluster stamps needs to see every version
	// a client may have seen, so that it stamps itself above them (the
	// target's too during a migration, for the reason NeedRead gives).
	NeedStamp
)

// Satisfied reports whether ok[i] (per node of p) meets every group's need.
func (p Placement) Satisfied(ok []bool, need Need) bool {
	for _, g := range p.Groups {
		want, have := g.WriteNeed, 0
		switch need {
		case NeedRead:
			want = g.ReadNeed
		case NeedSettled:
			want = g.SettleNeed()
		case NeedStamp:
			want = g.SeenNeed()
		}
		for _, m := range g.Members {
			if ok[m] {
				have++
			}
		}
		if have < want {
			return false
		}
	}
	return true
}
