package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
	"github.com/plugdb/plugdb/replicators"
	"github.com/plugdb/plugdb/tlsconfig"
)

// The client verbs: put, get, create, update, delete, scan, status. Each talks
// to a plugdb router (or `plugdb dev`) over the public gRPC API plugdb.v1.KV.
//
// Exit codes: 0 on success; 1 when the key is missing (get, update, delete),
// after printing exactly "not found: KEY" on stderr; 2 for any other error,
// printed as "plugdb: MESSAGE" with the server's message.

const (
	defaultAddr    = "127.0.0.1:7070"
	defaultTimeout = 5 * time.Second
)

const ackHelp = `--ack says when the write is acknowledged:
  async      once the partition's leader has it durably
  semi-sync  once at least one in-sync follower has persisted it too
  sync       once every in-sync follower has persisted it too
Without --ack, the partition's configured mode applies; a mode weaker than the
configured one is served at the configured one. plugdb dev keeps one copy, so it
refuses semi-sync and sync.`

const exitCodesHelp = `Exit codes:
  0  success
  1  the key does not exist (get, update, delete); stderr is "not found: KEY"
  2  any other error; stderr is "plugdb: MESSAGE" with the server's message`

// cliCommands returns the client verbs, to be added to the root command.
func cliCommands() []*cobra.Command {
	return []*cobra.Command{
		putCommand(), getCommand(), createCommand(), updateCommand(), deleteCommand(),
		scanCommand(), statusCommand(),
	}
}

// clientFlags are the flags every client verb has.
type clientFlags struct {
	addr    string
	timeout time.Duration
	// keyspace names the keyspace of the request ("": the default one).
	keyspace string
	tls      tlsFlags
	creds    *tlsconfig.Creds // tls's, loaded by call
}

// keyspaceFlagHelp describes --keyspace, of the client verbs and bench.
const keyspaceFlagHelp = "the keyspace `NAME` to use (see docs/keyspaces.md); default: the default keyspace"

func (f *clientFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.addr, "addr", defaultAddr, "gRPC address (host:port) of the plugdb router or plugdb dev")
	cmd.Flags().DurationVar(&f.timeout, "timeout", defaultTimeout, "give up after this long (0: no limit)")
	cmd.Flags().StringVar(&f.keyspace, "keyspace", "", keyspaceFlagHelp)
	f.tls.register(cmd)
}

// call connects to f.addr and runs fn with a KV client under f.timeout, turning
// a gRPC error into the CLI's error (see cliError).
func (f *clientFlags) call(cmd *cobra.Command, key string, fn func(ctx context.Context, kv plugdbv1.KVClient) error) error {
	if f.addr == "" {
		return errors.New("--addr is empty: give the host:port of plugdb (default " + defaultAddr + ")")
	}
	if f.timeout < 0 {
		return fmt.Errorf("--timeout %s: must not be negative (0: no limit)", f.timeout)
	}
	creds, err := f.tls.creds()
	if err != nil {
		return err
	}
	f.creds = creds
	dial := &recordingDialer{}
	// passthrough: the dialer resolves the name, so a lookup failure is a dial
	// error it records (*net.DNSError) rather than a resolver's message.
	conn, err := grpc.NewClient("passthrough:///"+f.addr, creds.DialOption(),
		grpc.WithContextDialer(dial.dial))
	if err != nil {
		return fmt.Errorf("cannot reach plugdb at %s: %v", f.addr, err)
	}
	defer conn.Close()
	ctx := cmd.Context()
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.timeout)
		defer cancel()
	}
	if err := fn(ctx, plugdbv1.NewKVClient(conn)); err != nil {
		return f.cliError(cmd, key, err, dial.failure())
	}
	return nil
}

// cliError maps an error of a call to what the CLI reports. NotFound for a
// key (key != "") is printed here as "not found: KEY" and exits 1; everything
// else exits 2 with the server's message, or a clearer one when the server
// could not be reached (Unavailable, and dialErr, the connection's last dial,
// failed) or did not answer in time.
func (f *clientFlags) cliError(cmd *cobra.Command, key string, err, dialErr error) error {
	var ee *exitError
	if errors.As(err, &ee) {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err // a local error (such as writing the output), already clear
	}
	msg := st.Message()
	if c := st.Code(); dialErr == nil && (c == codes.Unavailable || c == codes.Unknown || c == codes.Internal) {
		// A refused TLS handshake surfaces as the connection's end.
		if hint := tlsHint(msg, f.creds); hint != "" {
			return fmt.Errorf("cannot reach plugdb at %s: %s%s", f.addr, msg, hint)
		}
	}
	switch st.Code() {
	case codes.NotFound:
		if key != "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "not found: %s\n", key)
			return &exitError{code: 1, err: &reportedError{msg: "not found: " + key}}
		}
	case codes.Unavailable:
		if dialErr != nil {
			return fmt.Errorf("cannot reach plugdb at %s: %s", f.addr, dialReason(dialErr))
		}
	case codes.DeadlineExceeded:
		if f.timeout > 0 {
			return fmt.Errorf("no answer from plugdb at %s within %s (raise --timeout)", f.addr, f.timeout)
		}
	case codes.Canceled:
		if cmd.Context().Err() != nil {
			return errors.New("interrupted")
		}
	}
	if msg == "" {
		msg = st.Code().String()
	}
	return errors.New(msg)
}

// recordingDialer dials TCP for the CLI's gRPC connection and keeps the error
// of the last dial that failed, cleared by one that succeeds: when a call then
// fails with Unavailable, that error (a *net.OpError, say) says why plugdb could
// not be reached, with no need to read grpc-go's message.
type recordingDialer struct {
	mu   sync.Mutex
	last error
}

func (d *recordingDialer) dial(ctx context.Context, addr string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", addr)
	d.mu.Lock()
	d.last = err
	d.mu.Unlock()
	return conn, err
}

// failure returns the error of the last dial if it failed, else nil.
func (d *recordingDialer) failure() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// dialReason is the short reason of a dial error ("connection refused", "no
// such host", …): the address is already in the CLI's message.
func dialReason(err error) string {
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Err
	}
	var sys *os.SyscallError
	if errors.As(err, &sys) {
		return sys.Err.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// reportedError is an error the command has already printed on stderr (such
// as "not found: KEY"); printError does not print it again.
type reportedError struct{ msg string }

func (e *reportedError) Error() string { return e.msg }

// printError prints a command's error as main does: "plugdb: MESSAGE", unless
// the command already printed it (a reportedError).
func printError(w io.Writer, err error) {
	var r *reportedError
	if errors.As(err, &r) {
		return
	}
	fmt.Fprintln(w, "plugdb:", err)
}

// readFlags are the read verbs' consistency flag.
type readFlags struct{ consistency string }

func (r *readFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.consistency, "consistency", "strong", "strong (from the partition's leader) or stale (a follower may answer; it may miss recent writes)")
}

func (r *readFlags) value() (plugdbv1.Consistency, error) {
	switch strings.ToLower(r.consistency) {
	case "strong":
		return plugdbv1.Consistency_CONSISTENCY_STRONG, nil
	case "stale":
		return plugdbv1.Consistency_CONSISTENCY_STALE, nil
	}
	return 0, fmt.Errorf("--consistency %q: allowed values are strong, stale", r.consistency)
}

// ackFlags are the write verbs' ack flag.
type ackFlags struct{ ack string }

const ackFlagHelp = "when the write is acknowledged: async (once the leader has it durably), " +
	"semi-sync (once at least one in-sync follower persisted it too), sync (once every in-sync follower did); " +
	"default: the partition's configured mode. A mode weaker than the configured one is served at the configured one"

func (a *ackFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&a.ack, "ack", "", ackFlagHelp)
}

func (a *ackFlags) value() (plugdbv1.Ack, error) {
	switch strings.ToLower(a.ack) {
	case "":
		return plugdbv1.Ack_ACK_DEFAULT, nil
	case "async":
		return plugdbv1.Ack_ACK_ASYNC, nil
	case "semi-sync":
		return plugdbv1.Ack_ACK_SEMI_SYNC, nil
	case "sync":
		return plugdbv1.Ack_ACK_SYNC, nil
	}
	return 0, fmt.Errorf("--ack %q: allowed values are %s", a.ack, strings.Join(replicators.AckNames(), ", "))
}

func getCommand() *cobra.Command {
	var f clientFlags
	var rf readFlags
	var nodeAddr string
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print the value of a key",
		Long: "Print the value of KEY alone, as raw bytes followed by a newline.\n" +
			"--node HOST:PORT reads from that node directly, whatever its role (a stale read\n" +
			"unless --consistency strong is given, which only a leader serves).\n\n" + exitCodesHelp,
		Example: "  plugdb get user:42\n  plugdb get --consistency stale user:42\n  plugdb get --node 127.0.0.1:7102 user:42",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			if nodeAddr != "" {
				if cmd.Flags().Changed("addr") {
					return errors.New("give --addr (the router) or --node (one node), not both")
				}
				f.addr = nodeAddr
				if !cmd.Flags().Changed("consistency") {
					rf.consistency = "stale"
				}
			}
			c, err := rf.value()
			if err != nil {
				return err
			}
			return f.call(cmd, key, func(ctx context.Context, kv plugdbv1.KVClient) error {
				resp, err := kv.Get(ctx, &plugdbv1.GetRequest{Key: []byte(key), Consistency: c, Keyspace: f.keyspace})
				if err != nil {
					return err
				}
				line := make([]byte, 0, len(resp.GetValue())+1)
				line = append(append(line, resp.GetValue()...), '\n')
				_, err = cmd.OutOrStdout().Write(line)
				return err
			})
		},
	}
	f.register(cmd)
	rf.register(cmd)
	cmd.Flags().StringVar(&nodeAddr, "node", "", "read from this node (host:port) directly instead of through the router")
	return cmd
}

// writeCommand builds put, create and update: VERB KEY VALUE, quiet on success.
func writeCommand(use, short, long string, keyNotFound bool, rpc func(plugdbv1.KVClient) func(context.Context, *plugdbv1.PutRequest, ...grpc.CallOption) (*plugdbv1.WriteResponse, error)) *cobra.Command {
	var f clientFlags
	var af ackFlags
	cmd := &cobra.Command{
		Use:     use + " KEY VALUE",
		Short:   short,
		Long:    long + "\nPrints nothing on success.\n\n" + ackHelp + "\n\n" + exitCodesHelp,
		Example: "  plugdb " + use + " user:42 ada\n  plugdb " + use + " --ack sync user:42 ada",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key, value := args[0], args[1]
			ack, err := af.value()
			if err != nil {
				return err
			}
			notFoundKey := ""
			if keyNotFound {
				notFoundKey = key
			}
			return f.call(cmd, notFoundKey, func(ctx context.Context, kv plugdbv1.KVClient) error {
				_, err := rpc(kv)(ctx, &plugdbv1.PutRequest{Key: []byte(key), Value: []byte(value), Ack: ack, Keyspace: f.keyspace})
				return err
			})
		},
	}
	f.register(cmd)
	af.register(cmd)
	return cmd
}

func putCommand() *cobra.Command {
	return writeCommand("put", "Store a value, creating or replacing the key",
		"Store VALUE under KEY, creating the key or replacing its value.\n",
		false, func(kv plugdbv1.KVClient) func(context.Context, *plugdbv1.PutRequest, ...grpc.CallOption) (*plugdbv1.WriteResponse, error) {
			return kv.Put
		})
}

func createCommand() *cobra.Command {
	return writeCommand("create", "Store a value only if the key does not exist",
		"Store VALUE under KEY only if KEY does not exist yet; if it does, fails with\n"+
			"\"plugdb: already exists: KEY\" (the server's message) and exit code 2.\n",
		false, func(kv plugdbv1.KVClient) func(context.Context, *plugdbv1.PutRequest, ...grpc.CallOption) (*plugdbv1.WriteResponse, error) {
			return kv.Create
		})
}

func updateCommand() *cobra.Command {
	return writeCommand("update", "Replace the value of an existing key",
		"Replace the value of KEY with VALUE only if KEY exists; if it does not, prints\n"+
			"\"not found: KEY\" and exits 1.\n",
		true, func(kv plugdbv1.KVClient) func(context.Context, *plugdbv1.PutRequest, ...grpc.CallOption) (*plugdbv1.WriteResponse, error) {
			return kv.Update
		})
}

func deleteCommand() *cobra.Command {
	var f clientFlags
	var af ackFlags
	cmd := &cobra.Command{
		Use:   "delete KEY",
		Short: "Delete a key",
		Long: "Delete KEY. Prints nothing on success; if KEY does not exist, prints\n" +
			"\"not found: KEY\" and exits 1.\n\n" + ackHelp + "\n\n" + exitCodesHelp,
		Example: "  plugdb delete user:42\n  plugdb delete --ack sync user:42",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			ack, err := af.value()
			if err != nil {
				return err
			}
			return f.call(cmd, key, func(ctx context.Context, kv plugdbv1.KVClient) error {
				_, err := kv.Delete(ctx, &plugdbv1.DeleteRequest{Key: []byte(key), Ack: ack, Keyspace: f.keyspace})
				return err
			})
		},
	}
	f.register(cmd)
	af.register(cmd)
	return cmd
}

func scanCommand() *cobra.Command {
	var f clientFlags
	var rf readFlags
	var prefix, start, end string
	var limit int64
	cmd := &cobra.Command{
		Use:   "scan [--prefix P | --start S --end E] [--limit N]",
		Short: "List keys and values in key order",
		Long: "List the keys with prefix P, or in the range [S, E) (S inclusive, E exclusive; no\n" +
			"--end: to the last key; no flags: every key), in key order across all partitions.\n" +
			"Prints one line per key, KEY<TAB>VALUE as raw bytes, written as they arrive;\n" +
			"nothing when no key matches. --limit N stops after N keys (0: no limit).\n" +
			"--timeout bounds the whole scan; use --timeout 0 for long scans.\n\n" + exitCodesHelp,
		Example: "  plugdb scan --prefix user:\n  plugdb scan --start a --end m --limit 10",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return fmt.Errorf("--limit %d: must be 0 (no limit) or more", limit)
			}
			c, err := rf.value()
			if err != nil {
				return err
			}
			req := &plugdbv1.ScanRequest{Limit: limit, Consistency: c, Keyspace: f.keyspace}
			if prefix != "" {
				req.Prefix = []byte(prefix)
			}
			if start != "" {
				req.Start = []byte(start)
			}
			if end != "" {
				req.End = []byte(end)
			}
			return f.call(cmd, "", func(ctx context.Context, kv plugdbv1.KVClient) error {
				stream, err := kv.Scan(ctx, req)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				var line []byte
				for {
					kvp, err := stream.Recv()
					if err == io.EOF {
						return nil
					}
					if err != nil {
						return err
					}
					line = append(line[:0], kvp.GetKey()...)
					line = append(line, '\t')
					line = append(line, kvp.GetValue()...)
					line = append(line, '\n')
					if _, err := out.Write(line); err != nil {
						return err
					}
				}
			})
		},
	}
	f.register(cmd)
	rf.register(cmd)
	cmd.Flags().StringVar(&prefix, "prefix", "", "only keys that start with `P`")
	cmd.Flags().StringVar(&start, "start", "", "first key of the range, inclusive")
	cmd.Flags().StringVar(&end, "end", "", "end of the range, exclusive (default: no upper bound)")
	cmd.Flags().Int64Var(&limit, "limit", 0, "at most `N` keys (0: no limit)")
	cmd.MarkFlagsMutuallyExclusive("prefix", "start")
	cmd.MarkFlagsMutuallyExclusive("prefix", "end")
	return cmd
}

func statusCommand() *cobra.Command {
	var f clientFlags
	var output string
	cmd := &cobra.Command{
		Use:   "status [-o text|json]",
		Short: "Describe the cluster: partitions, replicas, plugins",
		Long: "Describe the cluster: its keyspaces, and for one keyspace (--keyspace, default:\n" +
			"the default keyspace) the engine, partitioner and replicator in use with their\n" +
			"options, and per partition its replicas with role, address, epoch, applied LSN,\n" +
			"replication state, keys and bytes.\n\n" +
			"-o text (default) prints the cluster line, a table of the keyspaces when there are\n" +
			"several (name, number of partitions, partitioner, replicator, engine), the keyspace line\n" +
			"naming the keyspace described below it, its plugins line and a table of its\n" +
			"partitions. ISR says whether a follower is in the in-sync set that semi-sync and sync\n" +
			"acks count (- for a leader); LAG is a follower's LSNs not yet persisted / how long the\n" +
			"oldest has waited (- for a leader); ACK, on the leader's line, is the partition's\n" +
			"configured ack mode, with \"(fallback: async)\" when acks fell back to async.\n" +
			"Replication errors follow the table.\n" +
			"-o json prints\n" +
			"  {\"cluster\": \"…\", \"engine\": {\"plugin\": …, \"mode\": …, \"options\": {…}},\n" +
			"   \"partitioner\": {…}, \"replicator\": {…},\n" +
			"   \"partitions\": [{\"partition\": 0, \"epoch\": 1, \"replicas\": [{\"partition\": 0,\n" +
			"     \"addr\": \"127.0.0.1:7070\", \"role\": \"leader\", \"epoch\": 1, \"applied_lsn\": 42,\n" +
			"     \"keys\": 10, \"bytes\": 4096, \"isr\": false, \"persisted_lsn\": 42,\n" +
			"     \"lag_statements\": 0, \"lag_ms\": 0, \"replication_error\": \"\"}],\n" +
			"     \"ack\": \"semi-sync\", \"ack_fallback\": false}],\n" +
			"   \"keyspaces\": [{\"name\": \"default\", \"engine\": {…}, \"partitioner\": {…},\n" +
			"     \"replicator\": {…}, \"partitions\": [{…}, …]}, …]}\n" +
			"with numbers as JSON numbers; role is leader or follower. The top-level engine,\n" +
			"partitioner, replicator and partitions describe the keyspace of --keyspace;\n" +
			"keyspaces describes every keyspace, the default one first.\n\n" + exitCodesHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: allowed formats are text and json", output)
			}
			return f.call(cmd, "", func(ctx context.Context, kv plugdbv1.KVClient) error {
				resp, err := kv.Status(ctx, &plugdbv1.StatusRequest{Keyspace: f.keyspace})
				if err != nil {
					return err
				}
				st := statusFromProto(resp)
				if output == "json" {
					return writeStatusJSON(cmd.OutOrStdout(), st)
				}
				return writeStatusText(cmd.OutOrStdout(), st, f.keyspace)
			})
		},
	}
	f.register(cmd)
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// The JSON shape of `plugdb status -o json` (and GET /v1/status), which later
// issues keep; more fields may be added.
type statusJSON struct {
	Cluster     string          `json:"cluster"`
	Engine      pluginJSON      `json:"engine"`
	Partitioner pluginJSON      `json:"partitioner"`
	Replicator  pluginJSON      `json:"replicator"`
	Partitions  []partitionJSON `json:"partitions"`
	// Keyspaces describes every keyspace the cluster serves, the default one
	// first (keyspaces.go); the fields above describe the requested one
	// (--keyspace).
	Keyspaces []keyspaceJSON `json:"keyspaces"`
}

type pluginJSON struct {
	Plugin  string            `json:"plugin"`
	Mode    string            `json:"mode"`
	Options map[string]string `json:"options"`
}

type partitionJSON struct {
	Partition uint32        `json:"partition"`
	Epoch     uint64        `json:"epoch"`
	Replicas  []replicaJSON `json:"replicas"`
	// Ack is the leader's configured ack mode ("" when unknown); AckFallback
	// says its acks fell back to async.
	Ack         string `json:"ack"`
	AckFallback bool   `json:"ack_fallback"`
	// InSync is the number of in-sync replicas, the leader included;
	// AckNeeds how many the ack mode needs (0 when unknown).
	InSync     uint32 `json:"in_sync"`
	AckNeeds   uint32 `json:"ack_needs"`
	ReplicaSet uint32 `json:"replica_set"`
}

type replicaJSON struct {
	Partition  uint32 `json:"partition"`
	Addr       string `json:"addr"`
	Role       string `json:"role"`
	Epoch      uint64 `json:"epoch"`
	AppliedLSN uint64 `json:"applied_lsn"`
	Keys       int64  `json:"keys"`
	Bytes      int64  `json:"bytes"`
	// Replication, as the partition's leader sees this replica.
	ISR              bool   `json:"isr"`
	PersistedLSN     uint64 `json:"persisted_lsn"`
	LagStatements    uint64 `json:"lag_statements"`
	LagMS            int64  `json:"lag_ms"`
	ReplicationError string `json:"replication_error"`
	// ScansServed counts the scans the replica served since its process started.
	ScansServed uint64 `json:"scans_served"`
}

func statusFromProto(r *plugdbv1.StatusResponse) statusJSON {
	st := statusJSON{
		Cluster:     r.GetCluster(),
		Engine:      pluginFromProto(r.GetEngine()),
		Partitioner: pluginFromProto(r.GetPartitioner()),
		Replicator:  pluginFromProto(r.GetReplicator()),
		Partitions:  partitionsFromProto(r.GetPartitions()),
		Keyspaces:   keyspacesFromProto(r.GetKeyspaces()),
	}
	return st
}

func partitionsFromProto(parts []*plugdbv1.PartitionStatus) []partitionJSON {
	out := []partitionJSON{}
	for _, p := range parts {
		pj := partitionJSON{Partition: p.GetPartition(), Epoch: p.GetEpoch(), Replicas: []replicaJSON{},
			Ack: p.GetAck(), AckFallback: p.GetAckFallback(), InSync: p.GetInSync(), AckNeeds: p.GetAckNeeds(), ReplicaSet: p.GetReplicaSet()}
		for _, rep := range p.GetReplicas() {
			pj.Replicas = append(pj.Replicas, replicaJSON{
				Partition:        rep.GetPartition(),
				Addr:             rep.GetAddr(),
				Role:             rep.GetRole(),
				Epoch:            rep.GetEpoch(),
				AppliedLSN:       rep.GetAppliedLsn(),
				Keys:             rep.GetKeys(),
				Bytes:            rep.GetBytes(),
				ISR:              rep.GetIsr(),
				PersistedLSN:     rep.GetPersistedLsn(),
				LagStatements:    rep.GetLagStatements(),
				LagMS:            rep.GetLagMs(),
				ReplicationError: rep.GetReplicationError(),
				ScansServed:      rep.GetScansServed(),
			})
		}
		out = append(out, pj)
	}
	return out
}

func pluginFromProto(p *plugdbv1.Plugin) pluginJSON {
	opts := map[string]string{}
	maps.Copy(opts, p.GetOptions())
	return pluginJSON{Plugin: p.GetPlugin(), Mode: p.GetMode(), Options: opts}
}

func writeStatusJSON(w io.Writer, st statusJSON) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// writeStatusText prints, for example:
//
//	cluster: dev
//
//	KEYSPACE  PARTITIONS  PARTITIONER      REPLICATOR                          ENGINE
//	default   2           hash (process)   statement (process; ack=semi-sync)  rowfile (process; sync=batch)
//	events    3           range (process)  statement (process; ack=async)      memory (process)
//
//	keyspace: default
//	plugins: engine=rowfile (plugin; sync=batch)  partitioner=hash (inprocess; partitions=2)  replicator=statement (inprocess)
//
//	PARTITION  ROLE      ADDR            EPOCH  APPLIED LSN  ISR  LAG        KEYS  BYTES  SCANS  ACK
//	0          leader    127.0.0.1:7101  1      42           -    -          10    4096   3      semi-sync
//	0          follower  127.0.0.1:7102  1      40           yes  2 / 15ms   10    4096   0      -
//
// followed by one line per replica with a replication error. SCANS counts the
// scans each replica served since its process started. The keyspaces' table
// (only when there are several) and the "keyspace:" line, naming the keyspace
// that the plugins line and the partitions' table describe (keyspace, "" for
// the default one), come from writeKeyspacesText; a server that lists no
// keyspaces gets neither.
func writeStatusText(w io.Writer, st statusJSON, keyspace string) error {
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "cluster: %s\n", orDash(st.Cluster))
	if err := writeKeyspacesText(&buf, st.Keyspaces, keyspace); err != nil {
		return err
	}
	fmt.Fprintf(&buf, "plugins: engine=%s  partitioner=%s  replicator=%s\n\n",
		pluginText(st.Engine), pluginText(st.Partitioner), pluginText(st.Replicator))
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tROLE\tADDR\tEPOCH\tAPPLIED LSN\tISR\tLAG\tKEYS\tBYTES\tSCANS\tACK")
	var errs []string
	for _, p := range st.Partitions {
		if len(p.Replicas) == 0 {
			fmt.Fprintf(tw, "%d\t-\t-\t%d\t-\t-\t-\t-\t-\t-\t%s\n", p.Partition, p.Epoch, ackText(p))
		}
		for _, r := range p.Replicas {
			ack := "-"
			if r.Role == "leader" {
				ack = ackText(p)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%s\n",
				p.Partition, orDash(r.Role), orDash(r.Addr), r.Epoch, r.AppliedLSN, isrText(r), lagText(r), r.Keys, r.Bytes, r.ScansServed, ack)
			if r.ReplicationError != "" {
				errs = append(errs, fmt.Sprintf("partition %d replica %s: replication error: %s", p.Partition, orDash(r.Addr), r.ReplicationError))
			}
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(errs) > 0 {
		buf.WriteString("\n" + strings.Join(errs, "\n") + "\n")
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// isrText is a replica's ISR column: yes or no for a follower, - otherwise (a
// leader is not its own follower; an unreachable replica is unknown).
func isrText(r replicaJSON) string {
	if r.Role != "follower" {
		return "-"
	}
	if r.ISR {
		return "yes"
	}
	return "no"
}

// lagText is a follower's LAG column, "STATEMENTS / TIME" (0 / 0s when caught
// up); - for a leader or a replica whose state is unknown.
func lagText(r replicaJSON) string {
	if r.Role != "follower" {
		return "-"
	}
	return fmt.Sprintf("%d / %s", r.LagStatements, time.Duration(r.LagMS)*time.Millisecond)
}

// ackText is a partition's ACK column: its configured mode, "-" when unknown.
func ackText(p partitionJSON) string {
	s := orDash(p.Ack)
	inSync := fmt.Sprint(p.InSync)
	if p.ReplicaSet > 0 {
		inSync = fmt.Sprintf("%d of %d", p.InSync, p.ReplicaSet)
	}
	switch {
	case p.AckFallback:
		s += " (fallback: async)"
	case p.AckNeeds == 1 && p.Ack != "async":
		s += fmt.Sprintf(" (%s in sync; the leader alone may acknowledge)", inSync)
	case p.AckNeeds > p.InSync:
		s += fmt.Sprintf(" (%s in sync, needs %d: writes fail)", inSync, p.AckNeeds)
	case p.AckNeeds > 0:
		s += fmt.Sprintf(" (%s in sync, needs %d)", inSync, p.AckNeeds)
	}
	return s
}

func pluginText(p pluginJSON) string {
	s := orDash(p.Plugin)
	var details []string
	if p.Mode != "" {
		details = append(details, p.Mode)
	}
	for _, k := range slices.Sorted(maps.Keys(p.Options)) {
		details = append(details, k+"="+p.Options[k])
	}
	if len(details) > 0 {
		s += " (" + strings.Join(details, "; ") + ")"
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
