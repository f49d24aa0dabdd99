package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// RecordFile is the file in a cluster folder that records the running
// cluster: the supervisor's and every child's PID, and the endpoints. The
// supervisor writes it as it starts processes and removes it when it stopped
// them all.
const RecordFile = "cluster.json"

// procID tells a process apart from a later one that reuses its PID.
type procID struct {
	// PID is the process id.
	PID int `json:"pid"`
	// Start is the process's start time in clock ticks since boot.
	Start uint64 `json:"start"`
	// Cmdline is its command line.
	Cmdline []string `json:"cmdline"`
}

// Process is one recorded process.
type Process struct {
	// Name is "supervisor", "zookeeper-<i>", "router", "node-p<p>-r<r>", or
	// "node-<keyspace>-p<p>-r<r>" for a node of a keyspace other than the
	// default one.
	Name string `json:"name"`
	procID
	// Addr is where it serves: a ZooKeeper client port, the router's gRPC
	// address, a node's address; empty for the supervisor.
	Addr string `json:"addr,omitempty"`
	// Log is its log file (stdout and stderr); empty for the supervisor.
	Log string `json:"log,omitempty"`
	// Metrics is where a node serves /metrics and /healthz (metrics.base_port);
	// empty: nowhere. The router serves them on its HTTP address.
	Metrics string `json:"metrics,omitempty"`
}

// Record is the content of RecordFile.
type Record struct {
	// Dir is the cluster folder, absolute.
	Dir string `json:"dir"`
	// Config is the config file the children got with --config ("" for none).
	Config string `json:"config"`
	// Ready is true once every partition had a leader.
	Ready bool `json:"ready"`
	// GRPC and HTTP are the router's endpoints.
	GRPC string `json:"grpc"`
	HTTP string `json:"http"`
	// ZooKeeper are the ensemble's client addresses.
	ZooKeeper []string `json:"zookeeper"`
	// ZooKeeperAuth is the credentials file the children get
	// (PLUGDB_ZOOKEEPER_AUTH_FILE): the config's zookeeper.auth_file, or
	// AuthFile in the cluster folder.
	ZooKeeperAuth string `json:"zookeeper_auth_file,omitempty"`
	// Requests is true when the supervisor starts nodes on request
	// (RequestNodes: it handles RequestSignal).
	Requests bool `json:"requests,omitempty"`
	// TLS are the clients' TLS files when the cluster serves mutual TLS
	// with certificates it made (`plugdb cluster up --tls`); nil otherwise.
	TLS *RecordTLS `json:"tls,omitempty"`
	// Supervisor is the `plugdb cluster up` process.
	Supervisor Process `json:"supervisor"`
	// Children are the ZooKeeper servers, the router and the nodes, in start
	// order; the nodes started on request (AddNodes) come last.
	Children []Process `json:"children"`
}

// ReadRecord reads dir's RecordFile; an error wrapping fs.ErrNotExist means
// there is none.
func ReadRecord(dir string) (Record, error) {
	path := filepath.Join(dir, RecordFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return Record{}, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return Record{}, fmt.Errorf("%s: not a plugdb cluster record: %v", path, err)
	}
	return r, nil
}

// writeRecord replaces dir's RecordFile atomically.
func writeRecord(dir string, r Record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, RecordFile)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func removeRecord(dir string) error {
	err := os.Remove(filepath.Join(dir, RecordFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Alive reports whether p is still running: a process with p's PID exists,
// is no zombie, and has p's start time and command line (it is not a later
// process that got the same PID).
func (p Process) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	id, running, err := identify(p.PID)
	if err != nil || !running {
		return false
	}
	return id.Start == p.Start && slices.Equal(id.Cmdline, p.Cmdline)
}

// String is the process's name and PID, e.g. "router (pid 1234)".
func (p Process) String() string { return fmt.Sprintf("%s (pid %d)", p.Name, p.PID) }
