#!/usr/bin/env bash
# Runs the plugin-boundary benchmarks once and prints the ratios docs/benchmarks.md quotes:
#
#   64 concurrent gets through the plugin vs 64 callers making one plain unary
#   go-plugin call each (target >= 5x), and vs the raw stream ceiling (target >= 1/3);
#   an Apply of 100 puts through the plugin vs in process (target <= 2x), with
#   rowfile's sync none and with its default sync batch (an fsync per Apply);
#   a get by 1 caller through the plugin vs in process (reported only).
#
# All figures come from one run (the machine's load at that moment applies to all).
# BENCHTIME (default 2s) and COUNT (default 1) are passed to go test; with COUNT > 1
# the ratios use the mean of each benchmark's runs.
#
# Given a file, it prints the ratios of the `go test -bench` output in it instead
# of running anything (e.g. of `go test -run '^$' -bench . ./core/loader ./plugins`).
#
#   scripts/bench-ratios.sh
#   BENCHTIME=5s scripts/bench-ratios.sh
#   scripts/bench-ratios.sh bench-output.txt
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -gt 0 ]; then
	out=$1
else
	benchtime=${BENCHTIME:-2s}
	count=${COUNT:-1}
	out=$(mktemp)
	trap 'rm -f "$out"' EXIT
	cmd=(go test -run '^$' -bench '^(BenchmarkGet|BenchmarkApplyBatch100|BenchmarkApplyBatch100SyncBatch|BenchmarkUnaryCall|BenchmarkRawStream)$'
		-benchtime "$benchtime" -count "$count" ./core/loader ./plugins)
	echo "# ${cmd[*]}"
	"${cmd[@]}" | tee "$out" | grep -E '^(Benchmark|ok|FAIL|---)' || true
	if grep -qE '^(FAIL|--- FAIL)' "$out"; then
		echo "bench-ratios: a benchmark failed" >&2
		exit 1
	fi
fi

awk '
# name-N  iterations  v1 unit1  v2 unit2 ...: keep the mean of each metric by name
/^Benchmark/ {
	name = $1
	sub(/-[0-9]+$/, "", name)
	for (i = 3; i < NF; i += 2) {
		sum[name, $(i + 1)] += $i
		cnt[name, $(i + 1)]++
	}
}
function get(name, unit) {
	if (!((name, unit) in cnt)) {
		printf "bench-ratios: no %s for %s in the output\n", unit, name > "/dev/stderr"
		missing = 1
		return 0
	}
	return sum[name, unit] / cnt[name, unit]
}
function line(what, value, target, ok) {
	printf "%-58s %8.2f   %-8s %s\n", what, value, target, ok == "" ? "" : (ok ? "met" : "MISSED")
}
END {
	get64 = get("BenchmarkGet/plugin/callers=64", "ops/s")
	unary = get("BenchmarkUnaryCall/callers=64", "ops/s")
	raw = get("BenchmarkRawStream/get", "ops/s")
	applyP = get("BenchmarkApplyBatch100/plugin", "ns/op")
	applyI = get("BenchmarkApplyBatch100/inprocess", "ns/op")
	applySP = get("BenchmarkApplyBatch100SyncBatch/plugin", "ns/op")
	applySI = get("BenchmarkApplyBatch100SyncBatch/inprocess", "ns/op")
	get1P = get("BenchmarkGet/plugin/callers=1", "ns/op")
	get1I = get("BenchmarkGet/inprocess/callers=1", "ns/op")
	if (missing) exit 1

	print ""
	printf "64 getters through the plugin     %9.0f gets/s\n", get64
	printf "64 callers of a unary plugin call %9.0f calls/s\n", unary
	printf "raw stream ceiling                %9.0f calls/s (one get per message, pipelined)\n", raw
	printf "apply of 100 puts, sync none      %9.1f us in process, %.1f us through the plugin\n", applyI / 1000, applyP / 1000
	printf "apply of 100 puts, sync batch     %9.1f us in process, %.1f us through the plugin\n", applySI / 1000, applySP / 1000
	printf "get by 1 caller                   %9.1f us in process, %.1f us through the plugin\n", get1I / 1000, get1P / 1000
	print ""
	printf "%-58s %8s   %-8s\n", "ratio", "value", "target"
	line("64 plugin getters / 64 unary callers", get64 / unary, ">= 5", get64 / unary >= 5)
	line("64 plugin getters / raw stream ceiling", get64 / raw, ">= 0.33", get64 / raw >= 1 / 3)
	line("apply of 100 through the plugin / in process, sync none", applyP / applyI, "<= 2", applyP / applyI <= 2)
	line("apply of 100 through the plugin / in process, sync batch", applySP / applySI, "<= 2", applySP / applySI <= 2)
	line("get by 1 caller through the plugin / in process (time)", get1P / get1I, "-", "")
}
' "$out"
