package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// Defaults of a run's bounds.
const (
	// DefaultMaxDuration bounds a phase that is bounded by a count (the load,
	// or a workload run with Ops) in time too.
	DefaultMaxDuration = 10 * time.Minute
	// CallTimeout bounds each call to the system.
	CallTimeout = 10 * time.Second
	// lagEvery is how often the replication lag is sampled while the workload runs.
	lagEvery = 100 * time.Millisecond
	// progressEvery is how often Progress is called while a phase runs.
	progressEvery = 250 * time.Millisecond
)

// Options are the parameters of one config's run: load Keys keys, then run
// Workload from Clients clients until Ops operations are done or Duration has
// passed, whichever comes first (a zero bound is no bound, but at least one
// must be set; the time bound is at most MaxDuration).
type Options struct {
	Workload     Workload
	Distribution string // uniform or zipfian
	Keys         int
	ValueSize    int
	Clients      int
	Duration     time.Duration
	Ops          int64
	// Warmup is how long the clients read loaded keys, unmeasured, between the
	// load and the workload (0: no warm-up): it lets the processes, their
	// connections and the caches settle, so the first config of a run is not
	// measured cold.
	Warmup time.Duration
	// LoadBatch is how many keys one request of the load phase inserts: 0 or
	// 1 is a Put per key, more is a Batch of that many puts.
	LoadBatch int
	// MaxDuration bounds every phase in time; 0: DefaultMaxDuration.
	MaxDuration time.Duration
	// Seed makes the key choices, operation mix and values reproducible.
	Seed uint64
	// Keyspace names the keyspace every request of the run addresses (the
	// load, the warm-up, the workload and the status reads); "" is the
	// default keyspace.
	Keyspace string
	// Progress, if set, is called while a phase runs and once at its end.
	Progress func(Progress)
}

// Progress is how far a phase has got.
type Progress struct {
	Phase   string // "load" or "workload"
	Done    int64  // keys loaded, or operations done (with or without error)
	Total   int64  // keys to load, or operations asked for (0: bounded by Limit)
	Elapsed time.Duration
	Limit   time.Duration // the phase's time bound
	Final   bool          // the phase is over
}

// Rate is Done per second of Elapsed.
func (p Progress) Rate() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

func (o Options) check() error {
	switch {
	case len(o.Workload.Mix) == 0:
		return errors.New("no workload")
	case o.Keys < 1:
		return fmt.Errorf("keys %d: must be at least 1", o.Keys)
	case o.ValueSize < 0:
		return fmt.Errorf("value size %d: must not be negative", o.ValueSize)
	case o.Clients < 1:
		return fmt.Errorf("clients %d: must be at least 1", o.Clients)
	case o.Warmup < 0:
		return fmt.Errorf("warm-up %v: must not be negative", o.Warmup)
	case o.LoadBatch < 0:
		return fmt.Errorf("load batch %d: must not be negative", o.LoadBatch)
	case o.Duration <= 0 && o.Ops <= 0:
		return errors.New("neither a duration nor an operation count bounds the workload")
	}
	return nil
}

func (o Options) maxDuration() time.Duration {
	if o.MaxDuration > 0 {
		return o.MaxDuration
	}
	return DefaultMaxDuration
}

// Run measures one running system through clients (one per concurrent client,
// len(clients) == o.Clients): it loads the keys, runs the workload while
// sampling the replication lag, and reads the status at the end. It fills the
// row's measured figures and Workload; the caller fills in what the config is.
// A failure that makes the figures meaningless (a failed load, no status) is
// the row's Error; errors of single workload operations are counted.
func Run(ctx context.Context, clients []plugdbv1.KVClient, o Options) Row {
	row := Row{Workload: o.Workload.Name}
	if err := o.check(); err != nil {
		row.Error = err.Error()
		return row
	}
	if len(clients) != o.Clients {
		row.Error = fmt.Sprintf("%d clients given for %d", len(clients), o.Clients)
		return row
	}
	live, err := load(ctx, clients, o, &row)
	if err != nil {
		row.Error = err.Error()
		return row
	}

	if err := warmUp(ctx, clients, o); err != nil {
		row.Error = err.Error()
		return row
	}

	lagCtx, stopLag := context.WithCancel(ctx)
	lagDone := make(chan *Lag)
	go func() { lagDone <- sampleLag(lagCtx, clients[0], o.Keyspace) }()
	inserted := runWorkload(ctx, clients, o, &row)
	stopLag()
	row.ReplicationLag = <-lagDone

	row.LogicalBytes = (live + inserted) * int64(KeyLen+o.ValueSize)
	if ctx.Err() != nil {
		row.Error = "interrupted during the workload"
		return row
	}
	stCtx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	st, err := clients[0].Status(stCtx, &plugdbv1.StatusRequest{Keyspace: o.Keyspace})
	if err != nil {
		row.Error = fmt.Sprintf("status after the workload: %v", err)
		return row
	}
	fillStatus(&row, st)
	if lag, ok := FollowerLag(st); ok {
		row.ReplicationLag = maxLag(row.ReplicationLag, lag)
	}
	return row
}

// load inserts keys 0..o.Keys-1 and returns how many it inserted; any failed
// insert fails the load.
func load(ctx context.Context, clients []plugdbv1.KVClient, o Options, row *Row) (int64, error) {
	var next, done, failed atomic.Int64
	var firstErr error
	var once sync.Once
	began := time.Now()
	deadline := began.Add(o.maxDuration())
	stop := o.report("load", int64(o.Keys), o.maxDuration(), &done, began)
	var wg sync.WaitGroup
	for c, kv := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewChaCha8(seed(o.Seed, 0, c)))
			batch := int64(max(o.LoadBatch, 1))
			values := make([][]byte, batch)
			for i := range values {
				values[i] = make([]byte, o.ValueSize)
			}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				first := next.Add(batch) - batch
				if first >= int64(o.Keys) {
					return
				}
				n := min(batch, int64(o.Keys)-first)
				for i := range n {
					fillValue(rng, values[i])
				}
				if err := insertKeys(ctx, kv, o.Keyspace, first, values[:n]); err != nil {
					failed.Add(n)
					once.Do(func() { firstErr = err })
				}
				done.Add(n)
			}
		})
	}
	wg.Wait()
	took := time.Since(began)
	stop(took)
	row.LoadOps = done.Load() - failed.Load()
	row.LoadDurationS = took.Seconds()
	if took > 0 {
		row.LoadThroughputOps = float64(row.LoadOps) / took.Seconds()
	}
	switch {
	case failed.Load() > 0:
		return 0, fmt.Errorf("load: %d of %d inserts failed, the first: %v", failed.Load(), o.Keys, firstErr)
	case ctx.Err() != nil:
		return 0, fmt.Errorf("load: %w", ctx.Err())
	case row.LoadOps < int64(o.Keys):
		return 0, fmt.Errorf("load: %d of %d keys inserted within %v", row.LoadOps, o.Keys, o.maxDuration())
	}
	return row.LoadOps, nil
}

// PhaseWarmup is the phase of reading loaded keys, unmeasured, before the workload.
const PhaseWarmup = "warmup"

// warmUp reads uniformly chosen loaded keys from every client for o.Warmup,
// measuring nothing; it fails only if every read failed.
func warmUp(ctx context.Context, clients []plugdbv1.KVClient, o Options) error {
	if o.Warmup <= 0 {
		return nil
	}
	var done, failed atomic.Int64
	var firstErr error
	var once sync.Once
	began := time.Now()
	deadline := began.Add(o.Warmup)
	stop := o.report(PhaseWarmup, 0, o.Warmup, &done, began)
	var wg sync.WaitGroup
	for c, kv := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewChaCha8(seed(o.Seed, 2, c)))
			w := &worker{kv: kv, keyspace: o.Keyspace}
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if err := w.get(ctx, Key(rng.Uint64N(uint64(o.Keys)))); err != nil && ctx.Err() == nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	stop(time.Since(began))
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("warm-up: %w", ctx.Err())
	case done.Load() > 0 && failed.Load() == done.Load():
		return fmt.Errorf("warm-up: all %d reads failed, the first: %v", failed.Load(), firstErr)
	}
	return nil
}

// runWorkload runs the workload from every client and fills the row's
// workload figures; it returns how many new keys were inserted.
func runWorkload(ctx context.Context, clients []plugdbv1.KVClient, o Options, row *Row) int64 {
	limit := o.maxDuration()
	if o.Duration > 0 {
		limit = min(o.Duration, limit)
	}
	var issued, done, inserted atomic.Int64
	nextInsert := atomic.Int64{}
	nextInsert.Store(int64(o.Keys))
	choosers := newChoosers(o.Distribution, uint64(o.Keys))
	recorders := make([]map[string]*opRecorder, len(clients))
	began := time.Now()
	deadline := began.Add(limit)
	stop := o.report("workload", o.Ops, limit, &done, began)
	var wg sync.WaitGroup
	for c, kv := range clients {
		recs := map[string]*opRecorder{}
		for _, op := range o.Workload.Ops() {
			recs[op] = newOpRecorder()
		}
		recorders[c] = recs
		wg.Go(func() {
			w := &worker{kv: kv, keyspace: o.Keyspace, rng: rand.New(rand.NewChaCha8(seed(o.Seed, 1, c))), value: make([]byte, o.ValueSize)}
			w.keys = choosers(w.rng)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if o.Ops > 0 && issued.Add(1) > o.Ops {
					return
				}
				op := o.Workload.Choose(w.rng.Float64())
				start := time.Now()
				var err error
				switch op {
				case OpRead:
					err = w.read(ctx)
				case OpUpdate:
					err = w.update(ctx)
				case OpInsert:
					err = w.insert(ctx, uint64(nextInsert.Add(1)-1))
					if err == nil {
						inserted.Add(1)
					}
				case OpScan:
					err = w.scan(ctx)
				case OpReadModifyWrite:
					err = w.readModifyWrite(ctx)
				}
				if ctx.Err() != nil {
					return // interrupted: the call's error is not the system's
				}
				recs[op].record(time.Since(start), err)
				done.Add(1)
			}
		})
	}
	wg.Wait()
	took := time.Since(began)
	stop(took)

	all := newOpRecorder()
	row.Ops = map[string]OpStats{}
	for _, op := range o.Workload.Ops() {
		merged := newOpRecorder()
		for _, recs := range recorders {
			merged.merge(recs[op])
		}
		row.Ops[op] = merged.stats()
		all.merge(merged)
	}
	s := all.stats()
	row.Operations, row.Errors = s.Count, s.Errors
	row.P50US, row.P99US, row.P999US = s.P50US, s.P99US, s.P999US
	row.DurationS = took.Seconds()
	if took > 0 {
		row.ThroughputOps = float64(row.Operations) / took.Seconds()
	}
	return inserted.Load()
}

// report calls o.Progress every progressEvery until the returned stop is
// called with the phase's duration, which reports the phase's end.
func (o Options) report(phase string, total int64, limit time.Duration, done *atomic.Int64, began time.Time) (stop func(time.Duration)) {
	if o.Progress == nil {
		return func(time.Duration) {}
	}
	quit := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				o.Progress(Progress{Phase: phase, Done: done.Load(), Total: total, Elapsed: time.Since(began), Limit: limit})
			}
		}
	}()
	return func(took time.Duration) {
		close(quit)
		<-stopped
		o.Progress(Progress{Phase: phase, Done: done.Load(), Total: total, Elapsed: took, Limit: limit, Final: true})
	}
}

// sampleLag reads the status of keyspace every lagEvery until ctx ends and
// returns the largest follower lag seen; it returns nil at once if the
// keyspace has no followers.
func sampleLag(ctx context.Context, kv plugdbv1.KVClient, keyspace string) *Lag {
	var worst *Lag
	t := time.NewTicker(lagEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return worst
		case <-t.C:
		}
		callCtx, cancel := context.WithTimeout(ctx, CallTimeout)
		st, err := kv.Status(callCtx, &plugdbv1.StatusRequest{Keyspace: keyspace})
		cancel()
		if err != nil {
			continue // a sample missed; the next one counts
		}
		lag, ok := FollowerLag(st)
		if !ok {
			return nil // no followers: nothing to sample, and no load on the system
		}
		worst = maxLag(worst, lag)
	}
}

// seed is the ChaCha8 seed of a phase's client.
func seed(base uint64, phase, client int) [32]byte {
	var s [32]byte
	for i, v := range []uint64{base, uint64(phase), uint64(client), 0x706c756764622062} {
		for b := range 8 {
			s[i*8+b] = byte(v >> (8 * b))
		}
	}
	return s
}

func fillValue(rng *rand.Rand, value []byte) {
	for i := 0; i < len(value); i += 8 {
		v := rng.Uint64()
		for b := 0; b < 8 && i+b < len(value); b++ {
			value[i+b] = byte(v >> (8 * b))
		}
	}
}

// insertKeys puts keys first, first+1, … with values into keyspace: a Put
// for one, a Batch for more.
func insertKeys(ctx context.Context, kv plugdbv1.KVClient, keyspace string, first int64, values [][]byte) error {
	if len(values) == 1 {
		if err := put(ctx, kv, keyspace, Key(uint64(first)), values[0]); err != nil {
			return fmt.Errorf("insert %s: %w", Key(uint64(first)), err)
		}
		return nil
	}
	req := &plugdbv1.BatchRequest{Ops: make([]*plugdbv1.BatchOp, len(values)), Keyspace: keyspace}
	for i, v := range values {
		req.Ops[i] = &plugdbv1.BatchOp{Op: plugdbv1.BatchOp_OP_PUT, Key: Key(uint64(first) + uint64(i)), Value: v}
	}
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	if _, err := kv.Batch(ctx, req); err != nil {
		return fmt.Errorf("insert %s..%s (a batch of %d): %w", Key(uint64(first)), Key(uint64(first)+uint64(len(values))-1), len(values), err)
	}
	return nil
}

func put(ctx context.Context, kv plugdbv1.KVClient, keyspace string, key, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	_, err := kv.Put(ctx, &plugdbv1.PutRequest{Key: key, Value: value, Keyspace: keyspace})
	return err
}

// worker is one client's state in the workload.
type worker struct {
	kv       plugdbv1.KVClient
	keyspace string // of every request ("": the default one)
	rng      *rand.Rand
	keys     KeyChooser
	value    []byte
}

func (w *worker) key() []byte { return Key(w.keys.Next()) }

func (w *worker) get(ctx context.Context, key []byte) error {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	_, err := w.kv.Get(ctx, &plugdbv1.GetRequest{Key: key, Keyspace: w.keyspace})
	return err
}

func (w *worker) read(ctx context.Context) error { return w.get(ctx, w.key()) }

func (w *worker) update(ctx context.Context) error {
	fillValue(w.rng, w.value)
	return put(ctx, w.kv, w.keyspace, w.key(), w.value)
}

func (w *worker) insert(ctx context.Context, i uint64) error {
	fillValue(w.rng, w.value)
	return put(ctx, w.kv, w.keyspace, Key(i), w.value)
}

// scan reads 1..MaxScanLength rows from a chosen key on.
func (w *worker) scan(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, CallTimeout)
	defer cancel()
	n := 1 + w.rng.IntN(MaxScanLength)
	stream, err := w.kv.Scan(ctx, &plugdbv1.ScanRequest{Start: w.key(), Limit: int64(n), Keyspace: w.keyspace})
	if err != nil {
		return err
	}
	for {
		if _, err := stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// readModifyWrite reads a key and writes it back with a new value.
func (w *worker) readModifyWrite(ctx context.Context) error {
	key := w.key()
	if err := w.get(ctx, key); err != nil {
		return err
	}
	fillValue(w.rng, w.value)
	return put(ctx, w.kv, w.keyspace, key, w.value)
}
