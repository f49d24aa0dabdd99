package bench

import "fmt"

// KeyLen is the length of every key Key returns: "user" and 16 hex digits.
const KeyLen = 4 + 16

// Key returns the key of index i: "user" followed by the 16 lowercase hex
// digits of FNV-1a 64 of i (as YCSB's hashed key names), so consecutive indices
// scatter over the key space and a range partitioner with evenly spaced split
// points ("user8", or "user4,user8,userc") gets even shares.
func Key(i uint64) []byte {
	return fmt.Appendf(make([]byte, 0, KeyLen), "user%016x", fnv64(i))
}

// fnv64 is FNV-1a 64 over the 8 bytes of v, lowest first (YCSB's fnvhash64).
func fnv64(v uint64) uint64 {
	const (
		offset = 0xcbf29ce484222325
		prime  = 0x100000001b3
	)
	h := uint64(offset)
	for range 8 {
		h ^= v & 0xff
		h *= prime
		v >>= 8
	}
	return h
}
