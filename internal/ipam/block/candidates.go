package block

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"iter"
	"net/netip"
)

// maxIndexBits caps the block indexes Candidates walks: a pool with more
// than 2^62 blocks (only possible for IPv6) is walked in its first 2^62
// blocks, which no cluster will ever fill.
const maxIndexBits = 62

// Count returns the number of blocks of size blockBits in pool, capped at
// 2^62.
func Count(pool netip.Prefix, blockBits int) uint64 {
	n := blockBits - pool.Bits()
	if n < 0 {
		return 0
	}
	return 1 << min(n, maxIndexBits)
}

// Of returns the block of size blockBits that contains addr.
func Of(addr netip.Addr, blockBits int) netip.Prefix {
	p, _ := addr.Unmap().Prefix(blockBits)
	return p
}

// Start returns where node starts its walk over count blocks: a hash of
// the node's name, so that nodes claiming at the same time try different
// blocks instead of all racing for the first free one, and each node's
// blocks still lie next to each other.
func Start(node string, count uint64) uint64 {
	if count == 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(node))
	return h.Sum64() % count
}

// Candidates yields the blocks of size blockBits in pool, starting at
// index start and wrapping around, each exactly once. The caller stops
// at the first block that is free. pool must be masked and blockBits at
// least its prefix length and at most the address length.
func Candidates(pool netip.Prefix, blockBits int, start uint64) iter.Seq[netip.Prefix] {
	return func(yield func(netip.Prefix) bool) {
		count := Count(pool, blockBits)
		if count == 0 || blockBits > pool.Addr().BitLen() {
			return
		}
		start %= count
		for i := range count {
			idx := start + i
			if idx >= count {
				idx -= count
			}
			if !yield(Nth(pool, blockBits, idx)) {
				return
			}
		}
	}
}

// Nth returns block number idx of size blockBits in pool.
func Nth(pool netip.Prefix, blockBits int, idx uint64) netip.Prefix {
	shift := uint(pool.Addr().BitLen() - blockBits)
	// idx << shift as a 128-bit number (hi, lo).
	lo := idx << shift
	var hi uint64
	if shift > 0 {
		hi = idx >> (64 - shift)
	}
	a := pool.Masked().Addr()
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) + uint32(lo)
		binary.BigEndian.PutUint32(b[:], v)
		return netip.PrefixFrom(netip.AddrFrom4(b), blockBits)
	}
	b := a.As16()
	bhi := binary.BigEndian.Uint64(b[:8])
	blo := binary.BigEndian.Uint64(b[8:])
	nlo := blo + lo
	carry := uint64(0)
	if nlo < blo {
		carry = 1
	}
	binary.BigEndian.PutUint64(b[:8], bhi+hi+carry)
	binary.BigEndian.PutUint64(b[8:], nlo)
	return netip.PrefixFrom(netip.AddrFrom16(b), blockBits)
}

// CheckSize reports whether blocks of blockBits fit pool and the block
// limits.
func CheckSize(pool netip.Prefix, blockBits int) error {
	bits := pool.Addr().BitLen()
	switch {
	case blockBits < pool.Bits():
		return fmt.Errorf("blocks of /%d are larger than the pool %s", blockBits, pool)
	case blockBits > bits:
		return fmt.Errorf("block size /%d is longer than an address of %s", blockBits, pool)
	case bits-blockBits > MaxHostBits:
		return fmt.Errorf("blocks of /%d have more than %d host bits", blockBits, MaxHostBits)
	}
	return nil
}
