// Package datadir manages plugdb's data folder: it records which engine created
// the folder, and refuses to open it with another engine rather than show an
// empty database where the data is unreadable.
//
// Layout:
//
//	<dir>/plugdb.json   the record: format, engine plugin and options, partition count, creation time
//	<dir>/p0, <dir>/p1  partition p's engine folder (PartitionDir)
//
// What is decisive: the partition count (keys are hashed by it) and the engine's plugin. Two engines lay out their files
// differently, so a folder made by rowfile is refused to memory and to a custom
// engine binary (and the other way round). A plugin given by path is recorded as
// an absolute path and compared as such. The engine's options (rowfile's sync,
// index, segment_size, …) are recorded as they were when the folder was created,
// but a different value is accepted: they tune how an engine writes and indexes
// its files, not what it can read back (an engine that cannot open its files
// with new options says so when it opens them).
//
// A folder that exists, is not empty and has no plugdb.json is refused too: it
// was not made by plugdb (or by a plugdb from before records), and plugdb does
// not write partition folders into someone else's folder.
package datadir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plugdb/plugdb/core/config"
)

// RecordFile is the record's file name in the data folder.
const RecordFile = "plugdb.json"

// Format is the record's format version.
const Format = 1

// Record is what plugdb.json holds.
type Record struct {
	// Format is the record's format version (Format).
	Format int `json:"format"`
	// Engine is the engine plugin that created the folder: a bundled name, or
	// the absolute path of a plugin binary.
	Engine string `json:"engine"`
	// Options are the engine's options when the folder was created (informative).
	Options map[string]string `json:"options,omitempty"`
	// Partitions is the partition count the folder was created with: keys are
	// spread by it, so another count would look for them in other partitions.
	Partitions int `json:"partitions"`
	// Partitioner and PartitionerOptions are the partitioner the folder's keys
	// were placed by (empty in records written before they were recorded).
	Partitioner        string            `json:"partitioner,omitempty"`
	PartitionerOptions map[string]string `json:"partitioner_options,omitempty"`
	// Created is when the folder was created.
	Created time.Time `json:"created"`
}

// KeyspacesDir is the folder under a data folder that holds the other
// keyspaces' data folders (config.Config.ForKeyspace).
const KeyspacesDir = "keyspaces"

// PartitionDir is partition p's engine folder: dir/p<p>.
func PartitionDir(dir string, p int) string {
	return filepath.Join(dir, "p"+strconv.Itoa(p))
}

// engineID is how a plugin is recorded and compared: a bundled name as is, a
// path as an absolute clean path.
func engineID(plugin string) (string, error) {
	if !strings.ContainsRune(plugin, '/') && !strings.ContainsRune(plugin, filepath.Separator) {
		return plugin, nil
	}
	return filepath.Abs(plugin)
}

// Prepare makes dir ready for engine and partitions: it creates dir if missing
// and records both in dir/plugdb.json; if the folder was created by another
// engine plugin or with another partition count, it refuses with an error
// naming both. An existing record that matches is left as it is.
func Prepare(dir string, engine config.Plugin, partitions int) error {
	if strings.TrimSpace(dir) == "" {
		return errors.New("data folder: no folder given (allowed: a folder path, e.g. --data ./plugdb-data)")
	}
	if strings.TrimSpace(engine.Plugin) == "" {
		return fmt.Errorf("data folder %s: no engine plugin given", dir)
	}
	id, err := engineID(engine.Plugin)
	if err != nil {
		return fmt.Errorf("data folder %s: engine %q: %v", dir, engine.Plugin, err)
	}

	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("data folder %s: %v", dir, err)
		}
		_ = syncDir(filepath.Dir(filepath.Clean(dir))) // make the new folder's entry durable; best effort
	case err != nil:
		return fmt.Errorf("data folder %s: %v", dir, err)
	case !st.IsDir():
		return fmt.Errorf("data folder %s is not a folder: use a new data folder (--data DIR)", dir)
	default:
		rec, err := Meta(dir)
		switch {
		case err == nil:
			if rec.Engine != id {
				return fmt.Errorf("data folder %s was created by engine %q; this config uses engine %q: use a new data folder (--data DIR) or the original engine",
					dir, rec.Engine, engine.Plugin)
			}
			if rec.Partitions != partitions {
				return fmt.Errorf("data folder %s was created with %d partitions; this config has partitions: %d, which would look for keys in other partitions: use a new data folder (--data DIR) or partitions: %d",
					dir, rec.Partitions, partitions, rec.Partitions)
			}
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			return err
		}
		// No record: only an empty folder is taken.
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("data folder %s: %v", dir, err)
		}
		for _, e := range entries {
			if isTemp(e.Name()) {
				_ = os.Remove(filepath.Join(dir, e.Name())) // an interrupted write of the record
				continue
			}
			if e.Name() == KeyspacesDir && e.IsDir() {
				continue // other keyspaces' folders (config.ForKeyspace), each with its own record
			}
			return fmt.Errorf("data folder %s is not empty (it holds %s) and has no %s, so plugdb did not create it: use a new or empty data folder (--data DIR)",
				dir, e.Name(), RecordFile)
		}
	}
	return write(dir, Record{Format: Format, Engine: id, Options: maps.Clone(engine.Options), Partitions: partitions, Created: time.Now().UTC().Truncate(time.Second)})
}

// CheckPartitioner makes sure dir's keys were placed by partitioner with the
// same options: another partitioner, or the same with other options (ring's
// vnodes, range's splits), would look for keys in other partitions, so it is
// refused with an error naming both. A record without a partitioner (written
// before partitioners were recorded, or by Prepare just now) is given this one.
// Call it after Prepare.
func CheckPartitioner(dir string, partitioner config.Plugin) error {
	rec, err := Meta(dir)
	if err != nil {
		return err
	}
	id, err := engineID(partitioner.Plugin)
	if err != nil {
		return fmt.Errorf("data folder %s: partitioner %q: %v", dir, partitioner.Plugin, err)
	}
	if rec.Partitioner == "" {
		rec.Partitioner, rec.PartitionerOptions = id, maps.Clone(partitioner.Options)
		return write(dir, rec)
	}
	if rec.Partitioner != id {
		return fmt.Errorf("data folder %s was partitioned by partitioner %q; this config uses partitioner %q, which would look for keys in other partitions: use a new data folder (--data DIR) or partitioner: {plugin: %s}",
			dir, rec.Partitioner, partitioner.Plugin, rec.Partitioner)
	}
	if !maps.Equal(rec.PartitionerOptions, partitioner.Options) && (len(rec.PartitionerOptions) > 0 || len(partitioner.Options) > 0) {
		return fmt.Errorf("data folder %s was partitioned by %s with options %s; this config gives it %s, which would look for keys in other partitions: use a new data folder (--data DIR) or the original options",
			dir, rec.Partitioner, formatOptions(rec.PartitionerOptions), formatOptions(partitioner.Options))
	}
	return nil
}

// Relayout records that dir's keys are now placed in partitions partitions
// by partitioner: a cluster node's keyspace was resharded (its layout in
// ZooKeeper is the authority). A folder without a record is left alone
// (Prepare makes one).
func Relayout(dir string, partitions int, partitioner config.Plugin) error {
	rec, err := Meta(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	id, err := engineID(partitioner.Plugin)
	if err != nil {
		return fmt.Errorf("data folder %s: partitioner %q: %v", dir, partitioner.Plugin, err)
	}
	if rec.Partitions == partitions && rec.Partitioner == id && maps.Equal(rec.PartitionerOptions, partitioner.Options) {
		return nil
	}
	rec.Partitions, rec.Partitioner, rec.PartitionerOptions = partitions, id, maps.Clone(partitioner.Options)
	return write(dir, rec)
}

// formatOptions renders options as {a: 1, b: 2}, sorted.
func formatOptions(opts map[string]string) string {
	parts := make([]string, 0, len(opts))
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		parts = append(parts, k+": "+opts[k])
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Meta reads dir's record. A folder without one gives an error wrapping
// fs.ErrNotExist.
func Meta(dir string) (Record, error) {
	path := filepath.Join(dir, RecordFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Record{}, fmt.Errorf("data folder %s has no %s: %w", dir, RecordFile, fs.ErrNotExist)
		}
		return Record{}, fmt.Errorf("data folder %s: %v", dir, err)
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, fmt.Errorf("data folder %s: %s is damaged (%v): restore it or use a new data folder (--data DIR)", dir, path, err)
	}
	if rec.Format < 1 || rec.Engine == "" {
		return Record{}, fmt.Errorf("data folder %s: %s is damaged (no format or engine): restore it or use a new data folder (--data DIR)", dir, path)
	}
	if rec.Format > Format {
		return Record{}, fmt.Errorf("data folder %s: %s has format %d, newer than this plugdb's %d: use a newer plugdb", dir, path, rec.Format, Format)
	}
	return rec, nil
}

const tempPrefix = "." + RecordFile + ".tmp-"

func isTemp(name string) bool { return strings.HasPrefix(name, tempPrefix) }

// write writes the record atomically: a temporary file, fsynced, renamed over
// plugdb.json, and the folder fsynced.
func write(dir string, rec Record) (err error) {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("data folder %s: writing %s: %v", dir, RecordFile, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if _, err = f.Write(b); err != nil {
		return fmt.Errorf("data folder %s: writing %s: %v", dir, RecordFile, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return fmt.Errorf("data folder %s: writing %s: %v", dir, RecordFile, err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("data folder %s: writing %s: %v", dir, RecordFile, err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("data folder %s: writing %s: %v", dir, RecordFile, err)
	}
	if err = os.Rename(tmp, filepath.Join(dir, RecordFile)); err != nil {
		return fmt.Errorf("data folder %s: writing %s: %v", dir, RecordFile, err)
	}
	if err = syncDir(dir); err != nil {
		return fmt.Errorf("data folder %s: writing %s: %v", dir, RecordFile, err)
	}
	return nil
}

// syncDir makes a folder's entries durable (not possible on Windows).
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// ReplicatorDir is partition p's replicator folder (its statement log): dir/p<p>.log.
func ReplicatorDir(dir string, p int) string {
	return filepath.Join(dir, "p"+strconv.Itoa(p)+".log")
}
