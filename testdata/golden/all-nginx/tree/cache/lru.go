package cache

import (
	"container/list"
	"hash/maphash"
	"sync"
	"time"
)

// LRU is a local tier: a size-bounded, expiring map of encoded values with
// a generation per key stripe, so that a value loaded while an invalidation
// happened is never stored.
//
// The race it closes: a reader snapshots the stamp, loads the OLD value from
// the database, a writer updates the database and invalidates the key, then
// the reader stores the old value. SetIf refuses that store because
// Invalidate bumped the generation under the same lock; a store that got in
// before Invalidate is removed by it. Either way the old value is gone once
// Invalidate returns.
//
// An LRU of size 0 stores nothing but still keeps generations: single-flight
// loads are named by stamp, and must not be shared across an invalidation
// even when nothing is cached locally.
type LRU struct {
	mu      sync.Mutex
	size    int
	ttl     time.Duration
	ll      *list.List // front = most recently used
	items   map[string]*list.Element
	epoch   uint64          // bumped by Clear
	gens    [stripes]uint64 // bumped by Invalidate, Begin and End, per stripe of keys
	writing [stripes]int    // writes between Begin and End, per stripe
	seed    maphash.Seed
}

// stripes trades memory for fewer needless refusals: an invalidation of one
// key refuses in-flight stores of the other keys of its stripe only.
const stripes = 256

type entry struct {
	key     string
	val     []byte
	expires time.Time
}

// Stamp identifies the state of a key's generation; see LRU.
type Stamp struct{ epoch, gen uint64 }

// NewLRU returns a tier of at most size entries that expire after ttl; it
// stores nothing when size or ttl is not positive.
func NewLRU(size int, ttl time.Duration) *LRU {
	if ttl <= 0 {
		size = 0
	}
	return &LRU{size: size, ttl: ttl, ll: list.New(), items: make(map[string]*list.Element), seed: maphash.MakeSeed()}
}

func (l *LRU) stripe(key string) int {
	return int(maphash.String(l.seed, key) % stripes)
}

// Stamp returns the key's current stamp: take it before loading a value
// and pass it to SetIf.
func (l *LRU) Stamp(key string) Stamp {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stamp{l.epoch, l.gens[l.stripe(key)]}
}

// Get returns the value of key unless it is missing or expired.
func (l *LRU) Get(key string) ([]byte, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	el, ok := l.items[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*entry)
	if now().After(e.expires) {
		l.ll.Remove(el)
		delete(l.items, key)
		return nil, false
	}
	l.ll.MoveToFront(el)
	return e.val, true
}

// SetIf stores val unless the key was invalidated (or the tier cleared)
// since s was taken, or a write of the key is under way (Begin without
// End). It reports whether it stored.
func (l *LRU) SetIf(key string, val []byte, s Stamp) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := l.stripe(key)
	if l.size <= 0 || s != (Stamp{l.epoch, l.gens[i]}) || l.writing[i] > 0 {
		return false
	}
	exp := now().Add(l.ttl)
	if el, ok := l.items[key]; ok {
		// Replace in place: the value is always the new one (unlike the
		// TinyLFU of go-redis/cache, go-redis/cache#105).
		el.Value = &entry{key, val, exp}
		l.ll.MoveToFront(el)
		return true
	}
	l.items[key] = l.ll.PushFront(&entry{key, val, exp})
	for l.ll.Len() > l.size {
		last := l.ll.Back()
		l.ll.Remove(last)
		delete(l.items, last.Value.(*entry).key)
	}
	return true
}

// Invalidate removes key and refuses stores of values loaded before now.
func (l *LRU) Invalidate(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.invalidateLocked(key)
}

func (l *LRU) invalidateLocked(key string) {
	l.gens[l.stripe(key)]++
	if el, ok := l.items[key]; ok {
		l.ll.Remove(el)
		delete(l.items, key)
	}
}

// Begin marks the start of a write of key's source: it removes key, and
// refuses every store of it until the matching End. A value loaded while
// the write is under way may be the old one or the new one, so none is kept.
func (l *LRU) Begin(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writing[l.stripe(key)]++
	l.invalidateLocked(key)
}

// End marks the end of a write that Begin started (committed or not).
// Values loaded before End are still refused; loads that start after it
// are stored again.
func (l *LRU) End(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.writing[l.stripe(key)]--
	l.invalidateLocked(key)
}

// Clear removes every key and refuses every store of a value loaded before now.
func (l *LRU) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.epoch++
	l.ll.Init()
	clear(l.items)
}

// Len returns the number of entries, expired ones included.
func (l *LRU) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ll.Len()
}
