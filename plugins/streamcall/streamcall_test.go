package streamcall

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

type call struct {
	id  uint64
	arg int
}

type result struct {
	id  uint64
	val int
}

// echo is a fake server stream: it answers every call of a message with
// twice its argument, in one message, or fails the stream when told to.
type echo struct {
	in       chan []*call
	out      chan []*result
	mu       sync.Mutex
	messages int
	calls    int
}

func (e *echo) Send(m []*call) error {
	e.mu.Lock()
	e.messages++
	e.calls += len(m)
	e.mu.Unlock()
	e.in <- append([]*call(nil), m...)
	return nil
}

func (e *echo) Recv() ([]*result, error) {
	rs, ok := <-e.out
	if !ok {
		return nil, errors.New("stream reset")
	}
	return rs, nil
}

// serve answers until in is closed; hold, if not nil, is waited for before
// each answer.
func (e *echo) serve(hold <-chan struct{}) {
	for m := range e.in {
		if hold != nil {
			<-hold
		}
		rs := make([]*result, len(m))
		for i, c := range m {
			rs[i] = &result{id: c.id, val: 2 * c.arg}
		}
		e.out <- rs
	}
	close(e.out)
}

func newClient(open func(context.Context) (Stream[[]*call, []*result], error)) *Client[*call, *result, []*call, []*result] {
	return New(Codec[*call, *result, []*call, []*result]{
		Open:     open,
		SetID:    func(c *call, id uint64) { c.id = id },
		ID:       func(r *result) uint64 { return r.id },
		Pack:     func(cs []*call) []*call { return append([]*call(nil), cs...) },
		Unpack:   func(rs []*result) []*result { return rs },
		MaxBatch: 64,
	})
}

func TestConcurrentCallsShareMessagesAndGetTheirOwnResults(t *testing.T) {
	e := &echo{in: make(chan []*call, 1), out: make(chan []*result, 1)}
	hold := make(chan struct{})
	go e.serve(hold)
	opens := 0
	c := newClient(func(context.Context) (Stream[[]*call, []*result], error) { opens++; return e, nil })
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	const callers = 32
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			r, err := c.Do(ctx, &call{arg: i})
			if err == nil && r.val != 2*i {
				err = fmt.Errorf("call %d answered %d", i, r.val)
			}
			if err != nil {
				errs <- err
			}
		})
	}
	close(hold) // the server answers only once every caller has queued or sent
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.calls != callers || e.messages >= callers || opens != 1 {
		t.Fatalf("%d calls in %d messages over %d streams; want %d calls in fewer messages, one stream", e.calls, e.messages, opens, callers)
	}
}

func TestMessagesKeepWithinMaxSize(t *testing.T) {
	e := &echo{in: make(chan []*call, 1), out: make(chan []*result, 1)}
	const maxSize = 10
	var sizes [][]int // of each message's calls
	answered := make(chan struct{})
	go func() { // answer like serve, noting sizes
		defer close(answered)
		for m := range e.in {
			var s []int
			rs := make([]*result, len(m))
			for i, c := range m {
				s = append(s, c.arg)
				rs[i] = &result{id: c.id, val: 2 * c.arg}
			}
			sizes = append(sizes, s)
			e.out <- rs
		}
	}()
	c := New(Codec[*call, *result, []*call, []*result]{
		Open:     func(context.Context) (Stream[[]*call, []*result], error) { return e, nil },
		SetID:    func(c *call, id uint64) { c.id = id },
		ID:       func(r *result) uint64 { return r.id },
		Pack:     func(cs []*call) []*call { return append([]*call(nil), cs...) },
		Unpack:   func(rs []*result) []*result { return rs },
		MaxBatch: 64,
		Size:     func(c *call) int { return c.arg },
		MaxSize:  maxSize,
	})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	args := []int{3, 4, 15, 6, 2, 9, 1, 10, 5, 7, 8, 3, 12, 1, 1, 1}
	for round := range 20 {
		for i, arg := range args {
			wg.Go(func() {
				if r, err := c.Do(ctx, &call{arg: arg}); err != nil || r.val != 2*arg {
					t.Errorf("round %d call %d: %v, %v", round, i, r, err)
				}
			})
		}
	}
	wg.Wait()
	close(e.in)
	<-answered
	calls, merged := 0, false
	for _, s := range sizes {
		total := 0
		for _, n := range s {
			total += n
		}
		if total > maxSize && len(s) > 1 {
			t.Fatalf("a message of calls of sizes %v: more than %d", s, maxSize)
		}
		calls += len(s)
		merged = merged || len(s) > 1
	}
	if calls != 20*len(args) || !merged {
		t.Fatalf("%d calls sent (want %d), several in one message: %v", calls, 20*len(args), merged)
	}
}

func TestABrokenStreamFailsItsCallsAndTheNextCallOpensAnother(t *testing.T) {
	broken := &echo{in: make(chan []*call, 1), out: make(chan []*result)}
	healthy := &echo{in: make(chan []*call, 1), out: make(chan []*result, 1)}
	go healthy.serve(nil)
	streams := []*echo{broken, healthy}
	c := newClient(func(context.Context) (Stream[[]*call, []*result], error) {
		s := streams[0]
		streams = streams[1:]
		return s, nil
	})
	defer c.Close()
	done := make(chan error, 1)
	go func() { _, err := c.Do(context.Background(), &call{arg: 1}); done <- err }()
	<-broken.in       // the call was sent
	close(broken.out) // and its stream broke before the answer
	var se *StreamError
	if err := <-done; !errors.As(err, &se) {
		t.Fatalf("a call whose stream broke: %v, want a *StreamError", err)
	}
	if r, err := c.Do(context.Background(), &call{arg: 4}); err != nil || r.val != 8 {
		t.Fatalf("the next call: %v, %v", r, err)
	}
}

func TestACallEndsWithItsContextAndAfterClose(t *testing.T) {
	e := &echo{in: make(chan []*call, 1), out: make(chan []*result)}
	c := newClient(func(context.Context) (Stream[[]*call, []*result], error) { return e, nil })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, &call{arg: 1}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a call never answered: %v, want its context's error", err)
	}
	c.Close()
	if _, err := c.Do(context.Background(), &call{arg: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("a call after Close: %v, want ErrClosed", err)
	}
	opened := errors.New("cannot connect")
	c2 := newClient(func(context.Context) (Stream[[]*call, []*result], error) { return nil, opened })
	if _, err := c2.Do(context.Background(), &call{}); !errors.Is(err, opened) {
		t.Fatalf("a call whose stream cannot open: %v", err)
	}
}

// fakeServerStream hands Serve the messages of in, then io.EOF, and records
// what Serve sends.
type fakeServerStream struct {
	in   [][]*call
	mu   sync.Mutex
	sent [][]*result
}

func (f *fakeServerStream) Recv() ([]*call, error) {
	if len(f.in) == 0 {
		return nil, io.EOF
	}
	m := f.in[0]
	f.in = f.in[1:]
	return m, nil
}

func (f *fakeServerStream) Send(rs []*result) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, append([]*result(nil), rs...))
	return nil
}

func TestServeAnswersEveryCallBeforeItReturns(t *testing.T) {
	var msgs [][]*call
	for m := range 5 {
		var cs []*call
		for i := range 10 {
			cs = append(cs, &call{id: uint64(m*10 + i), arg: m*10 + i})
		}
		msgs = append(msgs, cs)
	}
	f := &fakeServerStream{in: msgs}
	err := Serve(f, func(cs []*call) []*call { return cs },
		func(c *call) *result { return &result{id: c.id, val: 2 * c.arg} },
		func(rs []*result) []*result { return rs }, 8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for _, m := range f.sent {
		if len(m) > 8 {
			t.Fatalf("a message of %d results, want at most 8", len(m))
		}
		for _, r := range m {
			if r.val != 2*int(r.id) || seen[r.id] {
				t.Fatalf("result %+v: wrong or repeated", r)
			}
			seen[r.id] = true
		}
	}
	if len(seen) != 50 {
		t.Fatalf("%d of 50 calls answered when Serve returned", len(seen))
	}
}

func TestServeInTurnAnswersEachMessageBeforeReadingTheNext(t *testing.T) {
	var msgs [][]*call
	for m := range 5 {
		msgs = append(msgs, []*call{{id: uint64(2 * m), arg: 2 * m}, {id: uint64(2*m + 1), arg: 2*m + 1}})
	}
	f := &fakeServerStream{in: msgs}
	handled := 0
	err := ServeInTurn(f, func(cs []*call) []*result {
		f.mu.Lock()
		sent := len(f.sent)
		f.mu.Unlock()
		if sent != handled {
			t.Errorf("message %d handled after %d answers sent", handled, sent)
		}
		handled++
		rs := make([]*result, len(cs))
		for i, c := range cs {
			rs[i] = &result{id: c.id, val: 2 * c.arg}
		}
		return rs
	})
	if err != nil || len(f.sent) != 5 {
		t.Fatalf("ServeInTurn: %v, %d messages sent, want nil, 5", err, len(f.sent))
	}
	for i, m := range f.sent {
		if len(m) != 2 || m[0].id != uint64(2*i) || m[1].val != 2*(2*i+1) {
			t.Fatalf("message %d: %+v", i, m)
		}
	}
	broken := errors.New("stream reset")
	if err := ServeInTurn(&failingServerStream{err: broken}, func(cs []*call) []*result { return nil }); !errors.Is(err, broken) {
		t.Fatalf("ServeInTurn on a broken stream: %v", err)
	}
}

// failingServerStream fails every Recv with err.
type failingServerStream struct{ err error }

func (f *failingServerStream) Recv() ([]*call, error) { return nil, f.err }
func (f *failingServerStream) Send([]*result) error   { return nil }
