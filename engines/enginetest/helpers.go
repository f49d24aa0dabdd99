package enginetest

import (
	"bytes"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/errdefs"
)

// maxAlloc bounds the keys and values the kit builds to test size limits.
const maxAlloc = 64 << 20

// key returns a key for i holding binary bytes; keys sort in the order of i.
func key(i int) []byte { return []byte{0x00, 'k', byte(i >> 8), byte(i), 0xff} }

// value returns a value for key i, generation gen, holding binary bytes.
func value(i, gen int) []byte { return fmt.Appendf([]byte{0xff, 0x00}, "v%d.%d\x00", i, gen) }

func put(k, v []byte) engines.Mutation {
	return engines.Mutation{Op: engines.OpPut, Key: k, Value: v}
}

func del(k []byte) engines.Mutation { return engines.Mutation{Op: engines.OpDelete, Key: k} }

func withLSN(m engines.Mutation, lsn uint64) engines.Mutation {
	m.LSN = lsn
	return m
}

// open opens an engine on dir and closes it when the case ends.
func open(t T, h Harness, dir string) engines.Engine {
	t.Helper()
	e, err := h.Open(t.Context(), dir, nil)
	if err != nil {
		t.Fatalf("open %s: %v", dir, err)
	}
	if e == nil {
		t.Fatalf("open %s: nil engine and nil error", dir)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil && !errors.Is(err, engines.ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return e
}

func closeEngine(t T, e engines.Engine) {
	t.Helper()
	if err := e.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// writer applies batches with increasing LSNs and tracks the rows they leave.
type writer struct {
	t    T
	e    engines.Engine
	lsn  uint64
	rows map[string]engines.Row
}

func newWriter(t T, e engines.Engine) *writer {
	return &writer{t: t, e: e, rows: map[string]engines.Row{}}
}

// apply gives the mutations the next LSNs and applies them as one batch.
func (w *writer) apply(ms ...engines.Mutation) {
	w.t.Helper()
	w.applyFrom(w.lsn+1, ms...)
}

// applyFrom gives the mutations the LSNs first, first+1, … and applies them as
// one batch; AppliedLSN should then be the highest LSN applied so far.
func (w *writer) applyFrom(first uint64, ms ...engines.Mutation) {
	w.t.Helper()
	batch := make([]engines.Mutation, len(ms))
	for i, m := range ms {
		batch[i] = withLSN(m, first+uint64(i))
	}
	if err := w.e.Apply(w.t.Context(), batch); err != nil {
		w.t.Fatalf("apply %s: %v", fmtBatch(batch), err)
	}
	for _, m := range batch {
		switch m.Op {
		case engines.OpPut:
			w.rows[string(m.Key)] = engines.Row{Key: bytes.Clone(m.Key), Value: bytes.Clone(m.Value), LSN: m.LSN}
		case engines.OpDelete:
			delete(w.rows, string(m.Key))
		}
		w.lsn = max(w.lsn, m.LSN)
	}
}

// want returns the rows the engine should hold, in key order.
func (w *writer) want() []engines.Row { return sortedRows(w.rows) }

func sortedRows(m map[string]engines.Row) []engines.Row {
	return slices.SortedFunc(maps.Values(m), func(a, b engines.Row) int { return bytes.Compare(a.Key, b.Key) })
}

// inRange returns the rows of sorted that r selects.
func inRange(sorted []engines.Row, r engines.ScanRange) []engines.Row {
	var out []engines.Row
	for _, row := range sorted {
		if r.Limit > 0 && len(out) == r.Limit {
			break
		}
		if bytes.Compare(row.Key, r.Start) >= 0 && (len(r.End) == 0 || bytes.Compare(row.Key, r.End) < 0) {
			out = append(out, row)
		}
	}
	return out
}

func seqOf(rows []engines.Row) iter.Seq2[engines.Row, error] {
	return func(yield func(engines.Row, error) bool) {
		for _, r := range rows {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// collect ranges over seq to the end and fails the case on an error.
func collect(t T, what string, seq iter.Seq2[engines.Row, error]) []engines.Row {
	t.Helper()
	var rows []engines.Row
	for r, err := range seq {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		rows = append(rows, r)
	}
	return rows
}

func scan(t T, e engines.Engine, r engines.ScanRange) []engines.Row {
	t.Helper()
	return collect(t, fmtRange(r), engines.Scan(t.Context(), e, r))
}

// needScanner returns e as an engines.Scanner, or skips the case when it is
// not one (the interface is optional; MissingOptionalInterfaces checks the
// error its absence gives).
func needScanner(t T, e engines.Engine) engines.Scanner {
	t.Helper()
	return need(t, e, engines.AsScanner, "Scanner")
}

// needSnapshotter returns e as an engines.Snapshotter, or skips the case.
func needSnapshotter(t T, e engines.Engine) engines.Snapshotter {
	t.Helper()
	return need(t, e, engines.AsSnapshotter, "Snapshotter")
}

// need returns e as the optional interface as finds, or skips the case.
func need[I any](t T, e engines.Engine, as func(engines.Engine) (I, bool), name string) I {
	t.Helper()
	i, ok := as(e)
	if !ok {
		t.Skipf("engine does not implement engines.%s (optional)", name)
	}
	return i
}

// checkRows checks that e holds exactly want (in key order), by a full scan
// (if e is a Scanner) and a Get of each row.
func checkRows(t T, e engines.Engine, want []engines.Row) {
	t.Helper()
	if _, ok := engines.AsScanner(e); ok && !diffRows(t, "full scan", scan(t, e, engines.ScanRange{}), want) {
		return
	}
	for _, r := range want {
		checkGet(t, e, r)
	}
}

func rowEqual(a, b engines.Row) bool {
	return bytes.Equal(a.Key, b.Key) && bytes.Equal(a.Value, b.Value) && a.LSN == b.LSN
}

// diffRows reports the first difference between got and want and returns
// whether they are equal.
func diffRows(t T, what string, got, want []engines.Row) bool {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Errorf("%s: got %d rows, want %d; first missing: %s", what, len(got), len(want), fmtRow(want[i]))
		case i >= len(want):
			t.Errorf("%s: got %d rows, want %d; first extra: %s", what, len(got), len(want), fmtRow(got[i]))
		case !rowEqual(got[i], want[i]):
			t.Errorf("%s: row %d: got %s, want %s", what, i, fmtRow(got[i]), fmtRow(want[i]))
		default:
			continue
		}
		return false
	}
	return true
}

func checkGet(t T, e engines.Engine, want engines.Row) {
	t.Helper()
	got, err := e.Get(t.Context(), want.Key)
	if err != nil {
		t.Errorf("get %q: %v; want %s", want.Key, err, fmtRow(want))
		return
	}
	if !rowEqual(got, want) {
		t.Errorf("get %q: got %s, want %s", want.Key, fmtRow(got), fmtRow(want))
	}
}

func checkNotFound(t T, e engines.Engine, k []byte) {
	t.Helper()
	r, err := e.Get(t.Context(), k)
	if !errors.Is(err, engines.ErrNotFound) {
		t.Errorf("get %q: got %s, %v; want an error wrapping ErrNotFound", k, fmtRow(r), err)
		return
	}
	WantError(t, fmt.Sprintf("get %q", k), err, engines.ErrNotFound)
}

func checkLSN(t T, e engines.Engine, want uint64) {
	t.Helper()
	got, err := e.AppliedLSN(t.Context())
	if err != nil {
		t.Errorf("applied lsn: %v", err)
	} else if got != want {
		t.Errorf("applied lsn: got %d, want %d", got, want)
	}
}

// checkKeys checks e's Stats, if it is a StatsReporter.
func checkKeys(t T, e engines.Engine, want int) {
	t.Helper()
	sr, ok := engines.AsStatsReporter(e)
	if !ok {
		return
	}
	st, err := sr.Stats(t.Context())
	if err != nil {
		t.Errorf("stats: %v", err)
		return
	}
	if st.Keys != int64(want) {
		t.Errorf("stats: %d keys, want %d", st.Keys, want)
	}
	if st.BytesOnDisk < 0 {
		t.Errorf("stats: %d bytes on disk, want >= 0", st.BytesOnDisk)
	}
	if !(st.GarbageRatio >= 0 && st.GarbageRatio <= 1) {
		t.Errorf("stats: garbage ratio %v, want within 0..1", st.GarbageRatio)
	}
}

func wantInvalid(t T, what string, err error) {
	t.Helper()
	WantError(t, what, err, engines.ErrInvalidArgument)
}

// WantError checks that err is an answer of one of want, plugdb's sentinel
// errors (package errdefs, re-exported by the contract packages): it matches
// one of them with errors.Is, and no sentinel that one does not match itself
// (errdefs.Matching), so an error means what it should and nothing else, the
// same in process and through a plugin. List a sentinel before one it wraps
// (ErrTooFewInSync before ErrUnavailable). The partitioner and replicator kits
// use it too.
func WantError(t T, what string, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one wrapping %s", what, sentinelNames(want))
		return
	}
	for _, w := range want {
		if errors.Is(err, w) {
			if got, exp := errdefs.Matching(err), errdefs.Matching(w); !slices.Equal(got, exp) {
				t.Errorf("%s: error %q matches the sentinels %s, want %s", what, err, sentinelNames(got), sentinelNames(exp))
			}
			return
		}
	}
	t.Errorf("%s: got error %v (matching %s), want one wrapping %s", what, err, sentinelNames(errdefs.Matching(err)), sentinelNames(want))
}

// sentinelNames lists errs' texts, quoted: ["not found" "closed"].
func sentinelNames(errs []error) string {
	names := make([]string, len(errs))
	for i, e := range errs {
		names[i] = strconv.Quote(e.Error())
	}
	return "[" + strings.Join(names, " ") + "]"
}

// wantLimitError checks that err wraps ErrInvalidArgument and names limit.
func wantLimitError(t T, what string, err error, limit int) {
	t.Helper()
	wantInvalid(t, what, err)
	if err != nil && !strings.Contains(err.Error(), strconv.Itoa(limit)) {
		t.Errorf("%s: error %q does not name the limit %d", what, err, limit)
	}
}

func wantClosed(t T, what string, err error) {
	t.Helper()
	WantError(t, what+" after Close", err, engines.ErrClosed)
}

func scribble(b []byte) {
	for i := range b {
		b[i] = 'X'
	}
}

// short abbreviates long byte strings in messages.
func short(b []byte) string {
	if len(b) > 24 {
		return fmt.Sprintf("%q…(%d bytes)", b[:16], len(b))
	}
	return fmt.Sprintf("%q", b)
}

func fmtRow(r engines.Row) string {
	return fmt.Sprintf("{%s=%s lsn %d}", short(r.Key), short(r.Value), r.LSN)
}

func fmtRange(r engines.ScanRange) string {
	return fmt.Sprintf("scan [%s, %s) limit %d", short(r.Start), short(r.End), r.Limit)
}

func fmtBatch(batch []engines.Mutation) string {
	parts := make([]string, len(batch))
	for i, m := range batch {
		parts[i] = fmt.Sprintf("%s %s lsn %d", m.Op, short(m.Key), m.LSN)
		if m.Op == engines.OpPut {
			parts[i] = fmt.Sprintf("%s %s=%s lsn %d", m.Op, short(m.Key), short(m.Value), m.LSN)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// RequiredOnly returns e with only the required engines.Engine methods: every
// optional interface of e is hidden, for testing how a host falls back.
func RequiredOnly(e engines.Engine) engines.Engine { return requiredOnly{e} }

// requiredOnly hides every optional interface of the engine it wraps.
type requiredOnly struct{ engines.Engine }
