// Package bench holds what `plugdb bench` measures: the figures of one run of a
// workload against each of several configs, one Row per config. It is the
// shape of `plugdb bench --json` and what the table and the HTML report show.
package bench

// Report is one `plugdb bench` run: the settings every config ran with, and a
// row per config in the order given.
type Report struct {
	Settings Settings `json:"settings"`
	Rows     []Row    `json:"rows"`
}

// Settings are the workload parameters shared by every row of a report.
type Settings struct {
	Workload     string  `json:"workload"`     // A, B, C, E, F or load
	Distribution string  `json:"distribution"` // uniform or zipfian
	Keys         int     `json:"keys"`         // keys loaded before the workload
	ValueSize    int     `json:"value_size"`   // bytes per value
	Clients      int     `json:"clients"`      // concurrent gRPC clients
	DurationS    float64 `json:"duration_s,omitempty"`
	Ops          int64   `json:"ops,omitempty"` // operations asked for (0: bounded by duration)
	LoadBatch    int     `json:"load_batch"`    // keys per request of the load phase (1: a Put each)
	WarmupS      float64 `json:"warmup_s"`      // unmeasured reads before the workload, seconds
	Started      string  `json:"started"`       // RFC 3339
	Host         string  `json:"host,omitempty"`
	CPUs         int     `json:"cpus,omitempty"`
}

// Row is what one config measured.
type Row struct {
	Config     string `json:"config"`      // the config's name: its file name without .yaml
	ConfigFile string `json:"config_file"` // the path given to --config
	// Keyspace is the keyspace measured, when --keyspace named it (Config is
	// then CONFIG/KEYSPACE); empty: the default keyspace.
	Keyspace    string `json:"keyspace,omitempty"`
	Engine      string `json:"engine"`      // e.g. "rowfile (process) {index: btree, sync: batch}"
	Partitioner string `json:"partitioner"` // e.g. "ring (process) {vnodes: 128}"
	Replicator  string `json:"replicator"`  // e.g. "statement {ack: semi-sync}" or "none"
	System      string `json:"system"`      // "dev" or "cluster"
	Partitions  int    `json:"partitions"`
	Workload    string `json:"workload"`

	// The load phase: inserting Keys keys before the workload runs.
	LoadOps           int64   `json:"load_ops"`
	LoadDurationS     float64 `json:"load_duration_s"`
	LoadThroughputOps float64 `json:"load_throughput_ops"`

	// The workload phase, all operation types together.
	Operations    int64   `json:"operations"` // completed without error
	Errors        int64   `json:"errors"`
	DurationS     float64 `json:"duration_s"`
	ThroughputOps float64 `json:"throughput_ops"`
	P50US         float64 `json:"p50_us"`
	P99US         float64 `json:"p99_us"`
	P999US        float64 `json:"p999_us"`
	// Ops has the figures per operation type: read, update, insert, scan,
	// read_modify_write (those the workload uses).
	Ops map[string]OpStats `json:"ops"`

	// After the run, from the system's status.
	BytesOnDisk int64 `json:"bytes_on_disk"`
	// LogicalBytes is the sum of len(key)+len(value) of the live rows.
	LogicalBytes int64 `json:"logical_bytes"`
	// SpaceAmplification is BytesOnDisk / LogicalBytes (0 for a memory engine).
	SpaceAmplification float64 `json:"space_amplification"`
	// PartitionKeys are the live keys per partition (a leader's count).
	PartitionKeys []int64 `json:"partition_keys"`
	// PartitionSkew is max/mean of PartitionKeys (1 is perfectly even).
	PartitionSkew float64 `json:"partition_skew"`
	// ReplicationLag is the largest follower lag seen while the workload ran;
	// nil where there are no followers.
	ReplicationLag *Lag `json:"replication_lag,omitempty"`
	// KeysMoved is the share (0..1) of the loaded keys whose partition changes
	// when the partition count goes from Partitions to Partitions+1, computed
	// through the partitioner plugin.
	KeysMoved float64 `json:"keys_moved"`

	// Error says why a config could not be measured (it failed to start, say);
	// the other figures are then zero.
	Error string `json:"error,omitempty"`
}

// OpStats are the figures of one operation type.
type OpStats struct {
	Count  int64   `json:"count"`
	Errors int64   `json:"errors"`
	MeanUS float64 `json:"mean_us"`
	P50US  float64 `json:"p50_us"`
	P99US  float64 `json:"p99_us"`
	P999US float64 `json:"p999_us"`
	MaxUS  float64 `json:"max_us"`
}

// Lag is a follower's replication lag.
type Lag struct {
	Statements uint64 `json:"statements"`
	MS         int64  `json:"ms"`
}
