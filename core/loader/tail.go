package loader

import (
	"strings"
	"sync"
)

// tailBuffer keeps the last lines a plugin wrote to stderr, to report with its death.
type tailBuffer struct {
	mu    sync.Mutex
	lines []string
	part  strings.Builder
	max   int
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, b := range p {
		if b == '\n' {
			t.lines = append(t.lines, t.part.String())
			t.part.Reset()
			if len(t.lines) > t.max {
				t.lines = t.lines[len(t.lines)-t.max:]
			}
			continue
		}
		if t.part.Len() < 4096 {
			t.part.WriteByte(b)
		}
	}
	return len(p), nil
}

// String returns the kept lines joined by " | ".
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines
	if t.part.Len() > 0 {
		lines = append(lines[:len(lines):len(lines)], t.part.String())
	}
	return strings.Join(lines, " | ")
}
