package engines

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"4096", 4096, true}, {"4KiB", 4 << 10, true}, {"4 K", 4 << 10, true},
		{"64MiB", 64 << 20, true}, {"2G", 2 << 30, true}, {"100B", 100, true}, {" 1GiB ", 1 << 30, true},
		{"", 0, false}, {"-1", 0, false}, {"1.5MiB", 0, false}, {"1TiB", 0, false}, {"MiB", 0, false},
		{"9999999999GiB", 0, false},
	} {
		got, ok := ParseSize(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
