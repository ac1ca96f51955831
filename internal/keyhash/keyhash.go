// Package keyhash is the one hash function of Tako's key space.
//
// Every component that places or groups keys by hash uses Sum: the ring
// (which buckets own a key) and the store (which orders its records by the
// hash of their key, so that ranges of the hash space can be scanned and
// digested for anti-entropy). The function is part of the on-disk and
// placement contract: changing it moves every key in every existing cluster.
// It is FNV-1a over the key's bytes, 64 bits, finished with the MurmurHash3
// fmix64 avalanche step, truncated to its high 32 bits.
package keyhash

const (
	offset64 = 14695981039346656037
	prime64  = 1099511628211
)

// Sum returns the 32-bit position of key on the hash ring.
func Sum(key []byte) uint32 {
	h := uint64(offset64)
	for _, c := range key {
		h ^= uint64(c)
		h *= prime64
	}
	return uint32(fmix64(h) >> 32)
}

// SumString is Sum for a string, without converting it to a byte slice.
func SumString(key string) uint32 {
	h := uint64(offset64)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= prime64
	}
	return uint32(fmix64(h) >> 32)
}

// fmix64 is MurmurHash3's finaliser: it spreads every input bit over the
// whole word, which FNV alone does poorly for keys that differ in one byte.
func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}
