package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/engines"
)

// demoCommand runs the engine demo: what `make run` shows until `plugdb dev` exists.
func demoCommand() *cobra.Command {
	var data, engine, mode string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Store and read rows through an engine plugin process (the engine demo)",
		Long: "Start an engine as a real plugin process, write rows through it, read them back,\n" +
			"scan, and print its stats. Run it twice: the second run finds the first run's rows.",
		RunE: func(cmd *cobra.Command, args []string) error {
			level, _ := cmd.Flags().GetString("log-level")
			l, err := newLoader(newLogger(level))
			if err != nil {
				return err
			}
			return runDemo(cmd.Context(), l, loader.Block{Plugin: engine, Mode: mode}, data)
		},
	}
	cmd.Flags().StringVar(&data, "data", "./plugdb-data", "data folder (the demo uses DATA/demo)")
	cmd.Flags().StringVar(&engine, "engine", "rowfile", "bundled engine name or plugin binary path")
	cmd.Flags().StringVar(&mode, "mode", loader.ModeProcess, "process or inprocess")
	return cmd
}

func runDemo(ctx context.Context, l *loader.Loader, block loader.Block, data string) error {
	dir := filepath.Join(data, "demo")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	eng, err := l.OpenEngine(ctx, block, dir)
	if err != nil {
		return err
	}
	defer eng.Close()
	fmt.Printf("engine %s (%s) open on %s\n", block.Plugin, orDefault(block.Mode, loader.ModeProcess), dir)

	lsn, err := eng.AppliedLSN(ctx)
	if err != nil {
		return err
	}
	if lsn > 0 {
		fmt.Printf("found earlier rows: applied lsn %d\n", lsn)
	}
	stamp := time.Now().UTC().Format(time.RFC3339)
	batch := []engines.Mutation{
		{Op: engines.OpPut, Key: []byte("greeting"), Value: []byte("hello from plugdb"), LSN: lsn + 1},
		{Op: engines.OpPut, Key: []byte("last-run"), Value: []byte(stamp), LSN: lsn + 2},
		{Op: engines.OpPut, Key: []byte("user:1"), Value: []byte(`{"name":"ada"}`), LSN: lsn + 3},
		{Op: engines.OpPut, Key: []byte("user:2"), Value: []byte(`{"name":"grace"}`), LSN: lsn + 4},
	}
	start := time.Now()
	if err := eng.Apply(ctx, batch); err != nil {
		return err
	}
	durable := "durable when it returns"
	if !engines.CapabilitiesOf(eng).Durable {
		durable = "the engine is not durable: they last until it closes"
	}
	fmt.Printf("applied %d puts at lsn %d..%d in %v (%s)\n", len(batch), lsn+1, lsn+4, time.Since(start).Round(time.Microsecond), durable)

	row, err := eng.Get(ctx, []byte("greeting"))
	if err != nil {
		return err
	}
	fmt.Printf("get greeting -> %q (lsn %d)\n", row.Value, row.LSN)
	if _, ok := engines.AsScanner(eng); ok {
		fmt.Println("scan [user:, user;):")
		for r, err := range engines.Scan(ctx, eng, engines.ScanRange{Start: []byte("user:"), End: []byte("user;")}) {
			if err != nil {
				return err
			}
			fmt.Printf("  %s\t%s\n", r.Key, r.Value)
		}
	} else {
		fmt.Println("scan: the engine has no scans (it does not implement engines.Scanner)")
	}
	if _, ok := engines.AsStatsReporter(eng); ok {
		st, err := engines.StatsOf(ctx, eng)
		if err != nil {
			return err
		}
		fmt.Printf("stats: %d live keys, %d bytes on disk, garbage ratio %.2f\n", st.Keys, st.BytesOnDisk, st.GarbageRatio)
	}
	return nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
