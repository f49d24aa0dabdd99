//go:build !linux

package wal

import (
	"errors"
	"os"
)

// allocate is not supported here: segments grow as records are appended.
func allocate(*os.File, int64, int64) error { return errors.ErrUnsupported }

// datasync is f.Sync.
func datasync(f *os.File) error { return f.Sync() }
