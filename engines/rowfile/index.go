package rowfile

import (
	"bytes"
	"slices"
	"strings"
	"sync"

	"github.com/google/btree"
)

// entry locates the newest record of a key: a put, or a tombstone kept so that
// recovery and compaction know the key is deleted.
type entry struct {
	seg  *segment
	off  int64 // of the record header in the segment file
	lsn  uint64
	vlen uint32
	tomb bool
}

func (en entry) size(klen int) int64 { return recSize(klen, int(en.vlen)) }

// index maps keys to entries. Callers serialize: writes under Engine.mu's write
// lock, reads under at least its read lock.
type index interface {
	get(key []byte) (entry, bool)
	// put stores en for key and returns the entry it replaced.
	put(key []byte, en entry) (entry, bool)
	// del removes key and returns its entry.
	del(key []byte) (entry, bool)
	len() int
	// view returns a point-in-time walk over the entries in [start, end) (end nil
	// or empty: unbounded) in key order, that stays valid after the lock is
	// released and the index changes. Called under the read lock.
	view(start, end []byte) func(fn func(key string, en entry) bool)
}

func newIndex(kind string) index {
	if kind == "btree" {
		return &btreeIndex{t: btree.NewG(32, func(a, b item) bool { return a.key < b.key })}
	}
	return &hashIndex{m: make(map[string]entry)}
}

func inRange(key string, start, end []byte) bool {
	return (len(start) == 0 || key >= string(start)) && (len(end) == 0 || key < string(end))
}

// hashIndex is a Go map; a view collects the keys in range and sorts them.
type hashIndex struct{ m map[string]entry }

func (h *hashIndex) get(key []byte) (entry, bool) {
	en, ok := h.m[string(key)]
	return en, ok
}

func (h *hashIndex) put(key []byte, en entry) (entry, bool) {
	old, ok := h.m[string(key)]
	h.m[string(key)] = en
	return old, ok
}

func (h *hashIndex) del(key []byte) (entry, bool) {
	old, ok := h.m[string(key)]
	if ok {
		delete(h.m, string(key))
	}
	return old, ok
}

func (h *hashIndex) len() int { return len(h.m) }

func (h *hashIndex) view(start, end []byte) func(fn func(string, entry) bool) {
	var items []item
	for k, en := range h.m {
		if !en.tomb && inRange(k, start, end) {
			items = append(items, item{k, en})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return strings.Compare(a.key, b.key) })
	return func(fn func(string, entry) bool) {
		for _, it := range items {
			if !fn(it.key, it.entry) {
				return
			}
		}
	}
}

type item struct {
	key string
	entry
}

// btreeIndex is an ordered google/btree; a view is a copy-on-write clone.
type btreeIndex struct {
	t       *btree.BTreeG[item]
	cloneMu sync.Mutex // Clone writes the tree's copy-on-write context
}

func (b *btreeIndex) get(key []byte) (entry, bool) {
	it, ok := b.t.Get(item{key: string(key)})
	return it.entry, ok
}

func (b *btreeIndex) put(key []byte, en entry) (entry, bool) {
	old, ok := b.t.ReplaceOrInsert(item{string(key), en})
	return old.entry, ok
}

func (b *btreeIndex) del(key []byte) (entry, bool) {
	old, ok := b.t.Delete(item{key: string(key)})
	return old.entry, ok
}

func (b *btreeIndex) len() int { return b.t.Len() }

func (b *btreeIndex) view(start, end []byte) func(fn func(string, entry) bool) {
	b.cloneMu.Lock()
	t := b.t.Clone()
	b.cloneMu.Unlock()
	start, end = bytes.Clone(start), bytes.Clone(end)
	return func(fn func(string, entry) bool) {
		visit := func(it item) bool {
			if len(end) > 0 && it.key >= string(end) {
				return false
			}
			return it.tomb || fn(it.key, it.entry)
		}
		if len(start) == 0 {
			t.Ascend(visit)
		} else {
			t.AscendGreaterOrEqual(item{key: string(start)}, visit)
		}
	}
}
