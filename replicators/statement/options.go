package statement

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plugdb/plugdb/replicators"
)

// maxReplicas bounds min_insync: the most replicas a partition may have.
const maxReplicas = 9

// config is the replicator's parsed options.
type config struct {
	ack          replicators.Ack // configured ack mode
	ackTimeout   time.Duration   // how long a write waits for its acks
	fallback     bool            // after ackTimeout, acknowledge as async (logged, shown in status)
	isrLag       time.Duration   // a follower not caught up for this long leaves the in-sync set
	retainBytes  int64           // the retained log's size bound
	retainAge    time.Duration   // the retained log's age bound
	segmentBytes int64           // log segment size
	batchBytes   int             // bytes of entries per Append message
	heartbeat    time.Duration   // an idle leader's heartbeat to its followers
	minInsync    int             // replicas (leader included) semi-sync and sync need; 0: a majority
}

// optionDocs lists every option with its default and meaning, in the order an
// error message names them.
var optionDocs = []struct{ name, def, doc string }{
	{"ack", "semi-sync", "async | semi-sync | sync: when the leader acknowledges a write"},
	{"min_insync", "majority", "majority | 1..9: how many replicas, the leader included, must have persisted a write before semi-sync acknowledges it, and how many must be in sync for sync; with fewer in sync a write fails at once (1 lets a leader alone acknowledge)"},
	{"ack_timeout", "5s", "how long a write waits for its acks before it fails with Unavailable"},
	{"fallback", "none", "none | async: what a write does when its acks do not come in ack_timeout"},
	{"isr_lag", "2s", "a follower not caught up for this long leaves the in-sync set"},
	{"retain_bytes", "268435456", "keep at most this many bytes of statement log (a follower further behind is rebuilt from a snapshot)"},
	{"retain_age", "24h", "keep statements at most this long"},
	{"segment_bytes", "16777216", "size of one log segment file (the active one is preallocated to it)"},
	{"batch_bytes", "1048576", "bytes of statements per message to a follower"},
	{"heartbeat", "100ms", "how often an idle leader tells its followers the commit point"},
}

func optionNames() string {
	names := make([]string, len(optionDocs))
	for i, o := range optionDocs {
		names[i] = o.name
	}
	return strings.Join(names, ", ")
}

// parseConfig reads params over the defaults; an unknown or malformed option
// fails with ErrInvalidArgument naming it and what is allowed.
func parseConfig(params map[string]string) (config, error) {
	merged := map[string]string{}
	for _, o := range optionDocs {
		merged[o.name] = o.def
	}
	for k, v := range params {
		if !slices.ContainsFunc(optionDocs, func(o struct{ name, def, doc string }) bool { return o.name == k }) {
			return config{}, fmt.Errorf("statement replicator: unknown option %q (allowed: %s): %w", k, optionNames(), replicators.ErrInvalidArgument)
		}
		merged[k] = v
	}
	var c config
	var err error
	bad := func(name, allowed string) error {
		return fmt.Errorf("statement replicator: option %s = %q: want %s: %w", name, merged[name], allowed, replicators.ErrInvalidArgument)
	}
	if c.ack, err = replicators.ParseAck(merged["ack"]); err != nil || c.ack == replicators.AckDefault {
		return config{}, bad("ack", strings.Join(replicators.AckNames(), " | "))
	}
	switch merged["fallback"] {
	case "none":
	case "async":
		c.fallback = true
	default:
		return config{}, bad("fallback", "none | async")
	}
	durations := []struct {
		name string
		dst  *time.Duration
	}{{"ack_timeout", &c.ackTimeout}, {"isr_lag", &c.isrLag}, {"retain_age", &c.retainAge}, {"heartbeat", &c.heartbeat}}
	for _, d := range durations {
		v, err := time.ParseDuration(merged[d.name])
		if err != nil || v <= 0 {
			return config{}, bad(d.name, "a positive duration such as 500ms or 5s")
		}
		*d.dst = v
	}
	sizes := []struct {
		name string
		min  int64
		dst  *int64
	}{{"retain_bytes", 1, &c.retainBytes}, {"segment_bytes", 4096, &c.segmentBytes}}
	for _, s := range sizes {
		v, err := strconv.ParseInt(merged[s.name], 10, 64)
		if err != nil || v < s.min {
			return config{}, bad(s.name, fmt.Sprintf("a byte count of at least %d", s.min))
		}
		*s.dst = v
	}
	if v := merged["min_insync"]; v != "majority" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxReplicas {
			return config{}, bad("min_insync", fmt.Sprintf("majority or a replica count 1..%d", maxReplicas))
		}
		c.minInsync = n
	}
	b, err := strconv.Atoi(merged["batch_bytes"])
	if err != nil || b < 1024 {
		return config{}, bad("batch_bytes", "a byte count of at least 1024")
	}
	c.batchBytes = b
	return c, nil
}
