package cache

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type item struct {
	N    int    `json:"n"`
	Name string `json:"name"`
}

func loader(calls *atomic.Int64, v item) func(context.Context) (any, error) {
	return func(context.Context) (any, error) {
		calls.Add(1)
		return v, nil
	}
}

func TestMemoryMissThenLocal(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(10, time.Minute)
	var calls atomic.Int64
	var got item
	src, err := m.Get(ctx, "k", &got, loader(&calls, item{1, "one"}))
	if err != nil || src != SourceMiss || got != (item{1, "one"}) {
		t.Fatalf("first Get = %v, %v, %+v; want miss, nil, {1 one}", src, err, got)
	}
	got = item{}
	src, err = m.Get(ctx, "k", &got, loader(&calls, item{2, "two"}))
	if err != nil || src != SourceLocal || got != (item{1, "one"}) {
		t.Fatalf("second Get = %v, %v, %+v; want local, nil, {1 one}", src, err, got)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("load called %d times, want 1", n)
	}
	done, err := m.Invalidate(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	// While the write is under way nothing is cached: the value read may
	// be the old one.
	src, _ = m.Get(ctx, "k", &got, loader(&calls, item{1, "one"}))
	if src != SourceMiss {
		t.Fatalf("Get during the write = %v, want miss", src)
	}
	src, _ = m.Get(ctx, "k", &got, loader(&calls, item{1, "one"}))
	if src != SourceMiss {
		t.Fatalf("second Get during the write = %v, want miss (nothing stored)", src)
	}
	done(true)
	src, _ = m.Get(ctx, "k", &got, loader(&calls, item{2, "two"}))
	if src != SourceMiss || got != (item{2, "two"}) {
		t.Fatalf("Get after the write = %v, %+v; want miss, {2 two}", src, got)
	}
	if src, _ = m.Get(ctx, "k", &got, loader(&calls, item{3, "three"})); src != SourceLocal || got != (item{2, "two"}) {
		t.Fatalf("second Get after the write = %v, %+v; want local, {2 two}", src, got)
	}
}

func TestMemoryLoadErrorNotCached(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(10, time.Minute)
	errGone := errors.New("gone")
	var got item
	_, err := m.Get(ctx, "k", &got, func(context.Context) (any, error) { return nil, errGone })
	if !errors.Is(err, errGone) {
		t.Fatalf("err = %v, want the load's error", err)
	}
	var calls atomic.Int64
	if src, _ := m.Get(ctx, "k", &got, loader(&calls, item{N: 1})); src != SourceMiss {
		t.Fatalf("after a failed load Get = %v, want miss", src)
	}
}

func TestMemoryBoundedLRU(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(2, time.Minute)
	var calls atomic.Int64
	var got item
	for _, k := range []string{"a", "b", "a", "c"} { // c evicts b, the least recently used
		m.Get(ctx, k, &got, loader(&calls, item{N: 1}))
	}
	if n := m.lru.Len(); n != 2 {
		t.Fatalf("Len = %d, want 2", n)
	}
	for _, c := range []struct {
		key  string
		want Source
	}{
		{"a", SourceLocal},
		{"c", SourceLocal},
		{"b", SourceMiss},
	} {
		if src, _ := m.Get(ctx, c.key, &got, loader(&calls, item{N: 1})); src != c.want {
			t.Errorf("Get(%q) = %v, want %v", c.key, src, c.want)
		}
	}
}

func TestMemoryTTL(t *testing.T) {
	ctx := context.Background()
	clock := time.Now()
	now = func() time.Time { return clock }
	t.Cleanup(func() { now = time.Now })
	m := NewMemory(10, time.Second)
	var calls atomic.Int64
	var got item
	m.Get(ctx, "k", &got, loader(&calls, item{N: 1}))
	clock = clock.Add(999 * time.Millisecond)
	if src, _ := m.Get(ctx, "k", &got, loader(&calls, item{N: 2})); src != SourceLocal {
		t.Fatalf("before the TTL: %v, want local", src)
	}
	clock = clock.Add(2 * time.Millisecond)
	if src, _ := m.Get(ctx, "k", &got, loader(&calls, item{N: 2})); src != SourceMiss || got.N != 2 {
		t.Fatalf("after the TTL: %v %+v, want miss {2}", src, got)
	}
}

func TestMemorySizeZeroDisables(t *testing.T) {
	m := NewMemory(0, time.Minute)
	var calls atomic.Int64
	var got item
	for range 3 {
		if src, err := m.Get(context.Background(), "k", &got, loader(&calls, item{N: 1})); src != SourceMiss || err != nil {
			t.Fatalf("Get = %v, %v; want miss", src, err)
		}
	}
	if calls.Load() != 3 {
		t.Fatalf("load called %d times, want 3", calls.Load())
	}
}

// Concurrent misses share one load.
func TestMemorySingleFlight(t *testing.T) {
	m := NewMemory(10, time.Minute)
	var calls atomic.Int64
	release := make(chan struct{})
	load := func(context.Context) (any, error) {
		calls.Add(1)
		<-release
		return item{N: 7}, nil
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			var got item
			if _, err := m.Get(context.Background(), "k", &got, load); err != nil || got.N != 7 {
				t.Errorf("Get = %+v, %v", got, err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(release)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("load called %d times, want 1", n)
	}
}

// A load that read the old value before a write must not store it, and a
// Get that starts after the write must not join that load, also when
// nothing is cached (size 0).
func TestMemoryLoadRacingDelete(t *testing.T) {
	for _, size := range []int{10, 0} {
		loadRacingDelete(t, NewMemory(size, time.Minute))
	}
}

func loadRacingDelete(t *testing.T, m *Memory) {
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	done := make(chan item)
	go func() {
		var got item
		m.Get(ctx, "k", &got, func(context.Context) (any, error) {
			close(started)
			<-release
			return item{N: 1}, nil // the old value, read before the write
		})
		done <- got
	}()
	<-started
	// The write happened; the old load is still in flight.
	end, _ := m.Invalidate(ctx, "k")
	end(true)
	var calls atomic.Int64
	var got item
	if src, _ := m.Get(ctx, "k", &got, loader(&calls, item{N: 2})); src != SourceMiss || got.N != 2 {
		t.Fatalf("Get after the write = %v %+v, want miss {2} (not the in-flight old load)", src, got)
	}
	close(release)
	<-done
	if src, _ := m.Get(ctx, "k", &got, loader(&calls, item{N: 3})); got.N == 1 {
		t.Fatalf("Get = %v %+v: the old load was stored after the write", src, got)
	}
}

func TestMemoryCanceledWaiter(t *testing.T) {
	m := NewMemory(10, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var got item
	_, err := m.Get(ctx, "k", &got, func(context.Context) (any, error) {
		time.Sleep(10 * time.Millisecond)
		return item{}, nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}
