package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable writes r as an aligned table, a row per config: throughput,
// latency percentiles (all operations, then a column group per operation
// type when the workload has several), load throughput, bytes on disk (each
// partition's leader: one copy), space amplification, the largest replication
// lag, partition skew (max/mean keys) and the share of keys moved when a
// partition is added. The errors of rows that could not be measured follow
// the table.
func WriteTable(w io.Writer, r Report) error {
	head, cells, failed := Table(r)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, row := range cells {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, row := range failed {
		if _, err := fmt.Fprintf(w, "%s: error: %s\n", row.Config, row.Error); err != nil {
			return err
		}
	}
	return nil
}

// Table returns the cells of the table WriteTable prints, the HTML report
// shows too: the header, a row of cells per config, and the rows that failed
// (their cells say "failed").
func Table(r Report) (head []string, cells [][]string, failed []Row) {
	ops := tableOps(r.Rows)
	head = []string{"CONFIG", "SYSTEM", "OPS/S", "ERRORS"}
	if len(ops) > 1 {
		head = append(head, "ALL µs p50/p99/p999")
	}
	for _, op := range ops {
		head = append(head, strings.ToUpper(op)+" µs p50/p99/p999")
	}
	head = append(head, "LOAD OPS/S", "DISK", "SPACE AMP", "LAG", "SKEW", "MOVED N→N+1")
	for _, row := range r.Rows {
		c := []string{row.Config, orDash(row.System)}
		if row.Error != "" {
			failed = append(failed, row)
			for range len(head) - len(c) {
				c = append(c, "-")
			}
			c[2] = "failed"
			cells = append(cells, c)
			continue
		}
		c = append(c, Thousands(int64(row.ThroughputOps+0.5)), Thousands(row.Errors))
		if len(ops) > 1 {
			c = append(c, latencies(row.P50US, row.P99US, row.P999US))
		}
		for _, op := range ops {
			s, ok := row.Ops[op]
			switch {
			case !ok:
				c = append(c, "-")
			case s.Errors > 0:
				c = append(c, fmt.Sprintf("%s (%s errors)", latencies(s.P50US, s.P99US, s.P999US), Thousands(s.Errors)))
			default:
				c = append(c, latencies(s.P50US, s.P99US, s.P999US))
			}
		}
		c = append(c, Thousands(int64(row.LoadThroughputOps+0.5)), Bytes(row.BytesOnDisk), ratio(row.SpaceAmplification), lag(row.ReplicationLag),
			strconv.FormatFloat(row.PartitionSkew, 'f', 2, 64), percent(row.KeysMoved, row.Partitions))
		cells = append(cells, c)
	}
	return head, cells, failed
}

// tableOps are the operation types any measured row has, in OpTypes order.
func tableOps(rows []Row) []string {
	var out []string
	for _, op := range OpTypes {
		for _, row := range rows {
			if _, ok := row.Ops[op]; ok && row.Error == "" {
				out = append(out, op)
				break
			}
		}
	}
	return out
}

func latencies(p50, p99, p999 float64) string {
	f := func(v float64) string { return Thousands(int64(v + 0.5)) }
	return f(p50) + " / " + f(p99) + " / " + f(p999)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func ratio(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}

func lag(l *Lag) string {
	if l == nil {
		return "-"
	}
	return fmt.Sprintf("%s stmts / %d ms", Thousands(int64(l.Statements)), l.MS)
}

func percent(share float64, partitions int) string {
	if partitions == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%% (%d→%d)", 100*share, partitions, partitions+1)
}

// Bytes formats n bytes with a binary unit: 512 B, 1.5 KiB, 12.3 MiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
