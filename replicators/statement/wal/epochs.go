package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

const (
	epochsName    = "epochs"
	epochsTmpName = "epochs.tmp"
	epochsMagic   = "PWEP"
	epochsVersion = 1
	flagDropAll   = 1 // every segment file is to be removed (a Reset in progress)
)

// epochsFile is the content of the epochs file.
type epochsFile struct {
	// base: records at or below it are not in the log; the first segment,
	// if any, starts at base+1 (leftovers of an interrupted trim below it
	// are removed on Open); with no segment the log is empty with Last() ==
	// base.
	base    uint64
	dropAll bool
	hist    []EpochStart
}

func (e *epochsFile) encode() []byte {
	b := make([]byte, 0, 4+4+4+8+4+16*len(e.hist)+4)
	b = append(b, epochsMagic...)
	b = binary.LittleEndian.AppendUint32(b, epochsVersion)
	var flags uint32
	if e.dropAll {
		flags |= flagDropAll
	}
	b = binary.LittleEndian.AppendUint32(b, flags)
	b = binary.LittleEndian.AppendUint64(b, e.base)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.hist)))
	for _, h := range e.hist {
		b = binary.LittleEndian.AppendUint64(b, h.Epoch)
		b = binary.LittleEndian.AppendUint64(b, h.Start)
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

func decodeEpochs(b []byte) (epochsFile, error) {
	var e epochsFile
	const fixed = 4 + 4 + 4 + 8 + 4
	if len(b) < fixed+4 || string(b[:4]) != epochsMagic {
		return e, errors.New("not an epochs file")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return e, errors.New("crc mismatch")
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != epochsVersion {
		return e, fmt.Errorf("version %d, want %d", v, epochsVersion)
	}
	e.dropAll = binary.LittleEndian.Uint32(b[8:])&flagDropAll != 0
	e.base = binary.LittleEndian.Uint64(b[12:])
	n := int(binary.LittleEndian.Uint32(b[20:]))
	if len(body) != fixed+16*n {
		return e, fmt.Errorf("%d bytes for %d entries", len(b), n)
	}
	for i := 0; i < n; i++ {
		p := body[fixed+16*i:]
		h := EpochStart{Epoch: binary.LittleEndian.Uint64(p), Start: binary.LittleEndian.Uint64(p[8:])}
		if h.Epoch == 0 || h.Start == 0 ||
			(i > 0 && (h.Epoch <= e.hist[i-1].Epoch || h.Start <= e.hist[i-1].Start)) {
			return e, fmt.Errorf("entry %d %+v out of order", i, h)
		}
		e.hist = append(e.hist, h)
	}
	return e, nil
}

// readEpochs reads dir's epochs file; a missing file is an empty log at 0.
func readEpochs(dir string) (epochsFile, error) {
	path := filepath.Join(dir, epochsName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return epochsFile{}, nil
	}
	if err != nil {
		return epochsFile{}, fmt.Errorf("read epochs file %s: %w", path, err)
	}
	e, err := decodeEpochs(b)
	if err != nil {
		return epochsFile{}, fmt.Errorf("read epochs file %s: %w", path, err)
	}
	return e, nil
}

// writeEpochs replaces dir's epochs file atomically: temp file, fsync,
// rename, directory fsync.
func writeEpochs(dir string, e epochsFile) error {
	tmp, path := filepath.Join(dir, epochsTmpName), filepath.Join(dir, epochsName)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write epochs file: %w", err)
	}
	_, err = f.Write(e.encode())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write epochs file %s: %w", path, err)
	}
	return syncDir(dir)
}

// epochOf returns the epoch history h gives LSN lsn: 0 for LSN 0, and
// known == false for an LSN below h's first entry.
func epochOf(h []EpochStart, lsn uint64) (epoch uint64, known bool) {
	if lsn == 0 {
		return 0, true
	}
	i := sort.Search(len(h), func(i int) bool { return h[i].Start > lsn }) - 1
	if i < 0 {
		return 0, false
	}
	return h[i].Epoch, true
}

// histUpTo returns the entries of h starting at or below lsn (a new slice).
func histUpTo(h []EpochStart, lsn uint64) []EpochStart {
	n := sort.Search(len(h), func(i int) bool { return h[i].Start > lsn })
	return append([]EpochStart(nil), h[:n]...)
}

func equalHist(a, b []EpochStart) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
