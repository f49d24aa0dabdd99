package memory_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/enginetest"
	"github.com/plugdb/plugdb/engines/memory"
)

func TestConformance(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Harness {
		return enginetest.FromOpenFunc(memory.Open, nil)
	})
}

func TestConformanceSmallLimits(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Harness {
		return enginetest.FromOpenFunc(memory.Open, map[string]string{"max_key_size": "16", "max_value_size": "40"})
	})
}

func TestConformanceNoLimits(t *testing.T) {
	enginetest.Run(t, func(t *testing.T) enginetest.Harness {
		return enginetest.FromOpenFunc(memory.Open, map[string]string{"max_key_size": "0", "max_value_size": "0"})
	})
}

func TestCapabilities(t *testing.T) {
	e, err := memory.Open(t.Context(), engines.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	want := engines.Capabilities{Durable: false, MaxKeySize: 1024, MaxValueSize: 1 << 20}
	if got := engines.CapabilitiesOf(e); got != want {
		t.Errorf("capabilities: got %+v, want %+v", got, want)
	}
	e2, err := memory.Open(t.Context(), engines.Options{Params: map[string]string{"max_key_size": " 7 ", "max_value_size": "9"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	want = engines.Capabilities{MaxKeySize: 7, MaxValueSize: 9}
	if got := engines.CapabilitiesOf(e2); got != want {
		t.Errorf("capabilities: got %+v, want %+v", got, want)
	}
}

func TestBadParams(t *testing.T) {
	for _, tc := range []struct {
		params map[string]string
		want   []string // substrings of the error
	}{
		{map[string]string{"sync": "always"}, []string{`"sync"`, "max_key_size", "max_value_size"}},
		{map[string]string{"max_key_size": "big"}, []string{"max_key_size", `"big"`, ">= 0"}},
		{map[string]string{"max_value_size": "-1"}, []string{"max_value_size", `"-1"`}},
		{map[string]string{"max_value_size": ""}, []string{"max_value_size"}},
	} {
		_, err := memory.Open(context.Background(), engines.Options{Params: tc.params})
		if !errors.Is(err, engines.ErrInvalidArgument) {
			t.Errorf("open with %v: got %v, want an error wrapping ErrInvalidArgument", tc.params, err)
			continue
		}
		for _, s := range tc.want {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("open with %v: error %q does not mention %s", tc.params, err, s)
			}
		}
	}
}

func TestGetLimits(t *testing.T) {
	e, err := memory.Open(t.Context(), engines.Options{Params: map[string]string{"max_key_size": "4"}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	_, err = e.Get(t.Context(), []byte("12345"))
	if !errors.Is(err, engines.ErrInvalidArgument) || !strings.Contains(err.Error(), "max_key_size 4") {
		t.Errorf("get of an oversize key: got %v, want ErrInvalidArgument naming max_key_size 4", err)
	}
}
