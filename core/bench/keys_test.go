package bench

import (
	"regexp"
	"testing"
)

func TestKeyFormat(t *testing.T) {
	re := regexp.MustCompile(`^user[0-9a-f]{16}$`)
	seen := map[string]bool{}
	const n = 100000
	var firstDigit [16]int
	for i := range uint64(n) {
		k := string(Key(i))
		if !re.MatchString(k) || len(k) != KeyLen {
			t.Fatalf("Key(%d) = %q: want user + 16 lowercase hex digits", i, k)
		}
		if seen[k] {
			t.Fatalf("Key(%d) = %q repeats an earlier key", i, k)
		}
		seen[k] = true
		d := k[4]
		if d >= 'a' {
			firstDigit[d-'a'+10]++
		} else {
			firstDigit[d-'0']++
		}
	}
	// The same index gives the same key in every run (a known value).
	if got, want := string(Key(0)), "usera8c7f832281a39c5"; got != want {
		t.Fatalf("Key(0) = %q, want %q", got, want)
	}
	// Keys scatter: each first hex digit holds about 1/16 of the keys, so a
	// range split at "user8" halves them.
	for d, c := range firstDigit {
		if share := float64(c) / n; share < 0.055 || share > 0.07 {
			t.Errorf("first hex digit %x holds %.3f of the keys, want about 1/16", d, share)
		}
	}
	below := 0
	for k := range seen {
		if k < "user8" {
			below++
		}
	}
	if share := float64(below) / n; share < 0.49 || share > 0.51 {
		t.Errorf("keys below user8: %.3f, want about half", share)
	}
}

func TestFNV64KnownValue(t *testing.T) {
	// FNV-1a 64 of eight zero bytes.
	if got, want := fnv64(0), uint64(0xa8c7f832281a39c5); got != want {
		t.Fatalf("fnv64(0) = %#x, want %#x", got, want)
	}
}
