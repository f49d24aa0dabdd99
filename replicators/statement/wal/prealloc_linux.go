package wal

import (
	"os"

	"golang.org/x/sys/unix"
)

// allocate extends f to size bytes of allocated, zero-filled space
// (fallocate), from off.
func allocate(f *os.File, off, size int64) error {
	return unix.Fallocate(int(f.Fd()), 0, off, size-off)
}

// datasync makes f's written data durable, and the metadata needed to read
// it back (fdatasync): within preallocated space, no size change.
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
