// Package ring is Tako's consistent hash: it maps every key to the buckets
// that hold it.
//
// Each bucket owns PointsPerBucket points on a 32-bit ring; the point i of
// bucket b sits at keyhash.SumString(b + "#" + i). A key sits at
// keyhash.Sum(key) and belongs to the first n distinct buckets found walking
// clockwise from it (wrapping at 2^32), or to every bucket when there are
// fewer than n. Placement depends only on the bucket names, the number of
// points and the key, so it is the same on every node, proxy and client,
// across runs and machines; adding a bucket moves only the keys that the new
// bucket's points capture, about 1/(buckets+1) of them.
//
// A Ring is immutable and safe for concurrent use.
package ring

import (
	"fmt"
	"slices"
	"sort"
	"strconv"

	"github.com/takodb/tako/internal/keyhash"
)

// DefaultPointsPerBucket is the number of points a bucket gets when the
// configuration does not say.
const DefaultPointsPerBucket = 120

type point struct {
	hash   uint32
	bucket int32 // index into Ring.buckets
}

// Ring is a consistent hash over a fixed set of buckets.
type Ring struct {
	buckets []string
	points  []point // sorted by hash, then bucket index
}

// New returns the ring of the named buckets with pointsPerBucket points each.
// Bucket names must be distinct and pointsPerBucket positive; New panics
// otherwise, since the configuration validates both before building a ring.
func New(buckets []string, pointsPerBucket int) *Ring {
	if pointsPerBucket <= 0 {
		panic(fmt.Sprintf("ring: pointsPerBucket %d is not positive", pointsPerBucket))
	}
	r := &Ring{buckets: slices.Clone(buckets)}
	seen := make(map[string]bool, len(buckets))
	r.points = make([]point, 0, len(buckets)*pointsPerBucket)
	for bi, name := range buckets {
		if seen[name] {
			panic(fmt.Sprintf("ring: bucket %q listed twice", name))
		}
		seen[name] = true
		buf := make([]byte, 0, len(name)+12)
		for i := 0; i < pointsPerBucket; i++ {
			buf = strconv.AppendInt(append(append(buf[:0], name...), '#'), int64(i), 10)
			r.points = append(r.points, point{hash: keyhash.Sum(buf), bucket: int32(bi)})
		}
	}
	sort.Slice(r.points, func(i, j int) bool {
		a, b := r.points[i], r.points[j]
		if a.hash != b.hash {
			return a.hash < b.hash
		}
		// Two points at the same hash: order them by bucket name, not by
		// the order the buckets were listed in, so placement does not
		// depend on the configuration file's ordering.
		return r.buckets[a.bucket] < r.buckets[b.bucket]
	})
	return r
}

// Buckets returns the bucket names in the order New was given them. The
// indexes that Lookup returns refer to this slice, which must not be modified.
func (r *Ring) Buckets() []string { return r.buckets }

// Lookup returns the indexes of the n distinct buckets that own key, in ring
// order (the first is the key's primary bucket), appended to dst. When the
// ring has fewer than n buckets it returns all of them.
func (r *Ring) Lookup(dst []int, key []byte, n int) []int {
	return r.LookupHash(dst, keyhash.Sum(key), n)
}

// LookupHash is Lookup for a key whose hash is already known.
func (r *Ring) LookupHash(dst []int, h uint32, n int) []int {
	if n > len(r.buckets) {
		n = len(r.buckets)
	}
	if n <= 0 || len(r.points) == 0 {
		return dst
	}
	start := sort.Search(len(r.points), func(i int) bool { return r.points[i].hash >= h })
	found := 0
	for i := 0; i < len(r.points) && found < n; i++ {
		b := int(r.points[(start+i)%len(r.points)].bucket)
		if slices.Contains(dst[len(dst)-found:], b) {
			continue
		}
		dst = append(dst, b)
		found++
	}
	return dst
}

// Boundaries returns the distinct hashes of the ring's points, in
// increasing order. Between two consecutive boundaries b[i-1] < h <= b[i]
// every hash h belongs to the same buckets, as does every hash above the
// last boundary or not above the first (the arc that wraps around 2^32).
func (r *Ring) Boundaries() []uint32 {
	out := make([]uint32, 0, len(r.points))
	for i, p := range r.points {
		if i == 0 || p.hash != r.points[i-1].hash {
			out = append(out, p.hash)
		}
	}
	return out
}

// Arcs calls f with every arc of the hash space that bounds (distinct
// hashes in increasing order, such as Boundaries returns, or the union of
// two rings' boundaries) cut it into, in increasing order: [lo, hi] and a
// hash, owner, that every hash of the arc shares its buckets with. The arc
// that wraps around 2^32 comes as two: [0, bounds[0]] first, and
// [last+1, 2^32-1] last, both owned by bounds[0]. No bounds: no arc.
func Arcs(bounds []uint32, f func(lo, hi, owner uint32)) {
	if len(bounds) == 0 {
		return
	}
	f(0, bounds[0], bounds[0])
	for i := 1; i < len(bounds); i++ {
		f(bounds[i-1]+1, bounds[i], bounds[i])
	}
	if last := bounds[len(bounds)-1]; last != ^uint32(0) {
		f(last+1, ^uint32(0), bounds[0])
	}
}
