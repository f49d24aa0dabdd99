package ui

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/plugdb/plugdb/core/bench/report/headless"
)

// fakeStatus is a /v1/status of two keyspaces: default with two led
// partitions of two replicas, events with one leaderless partition.
const fakeStatus = `{"cluster":"fake",
 "engine":{"plugin":"rowfile","mode":"process","options":{"sync":"batch"}},
 "partitioner":{"plugin":"hash","mode":"inprocess","options":{}},
 "replicator":{"plugin":"statement","mode":"process","options":{"ack":"semi-sync"}},
 "partitions":[],
 "keyspaces":[
  {"name":"default",
   "engine":{"plugin":"rowfile","mode":"process","options":{"sync":"batch"}},
   "partitioner":{"plugin":"hash","mode":"inprocess","options":{}},
   "replicator":{"plugin":"statement","mode":"process","options":{"ack":"semi-sync"}},
   "layout_version":1,
   "partitions":[
    {"partition":0,"epoch":4,"ack":"semi-sync","in_sync":2,"ack_needs":2,"replica_set":2,"replicas":[
      {"partition":0,"addr":"10.0.0.1:7101","role":"leader","epoch":4,"applied_lsn":%d,"persisted_lsn":%d,"keys":5,"bytes":50,"isr":false,"lag_statements":0,"lag_ms":0,"replication_error":""},
      {"partition":0,"addr":"10.0.0.2:7102","role":"follower","epoch":4,"applied_lsn":90,"persisted_lsn":90,"keys":5,"bytes":50,"isr":true,"lag_statements":3,"lag_ms":12,"replication_error":""}]},
    {"partition":1,"epoch":2,"ack":"semi-sync","in_sync":1,"ack_needs":2,"replica_set":2,"replicas":[
      {"partition":1,"addr":"10.0.0.3:7103","role":"leader","epoch":2,"applied_lsn":7,"persisted_lsn":7,"keys":1,"bytes":9,"isr":false,"lag_statements":0,"lag_ms":0,"replication_error":""},
      {"partition":1,"addr":"10.0.0.4:7104","role":"follower","epoch":2,"applied_lsn":1,"persisted_lsn":1,"keys":1,"bytes":9,"isr":false,"lag_statements":6,"lag_ms":4000,"replication_error":"connection refused"}]}]},
  {"name":"events",
   "engine":{"plugin":"memory","mode":"inprocess","options":{}},
   "partitioner":{"plugin":"range","mode":"inprocess","options":{"splits":"m"}},
   "replicator":{"plugin":"none","mode":"inprocess","options":{}},
   "layout_version":3,
   "partitions":[{"partition":0,"epoch":0,"replicas":[]}]}]}`

// TestPageRenders drives the page in headless Chromium against a stand-in
// router: two keyspaces, a partition without a leader, counters that move,
// and a failover.
func TestPageRenders(t *testing.T) {
	b, err := headless.Find()
	if err != nil {
		t.Fatalf("%v (make test-deps installs Debian's chromium)", err)
	}
	var polls atomic.Int64
	events := NewEvents(5)
	events.Add(Event{Time: time.Now(), Keyspace: "default", Partition: 0, From: "10.0.0.2:7102", FromEpoch: 3, To: "10.0.0.1:7101", Epoch: 4})
	mux := http.NewServeMux()
	for path, h := range Handlers(Options{Events: events, Started: time.Now(), Keyspaces: []Keyspace{{Name: "default", Plugins: []Plugin{
		{Kind: "engine", Plugin: "rowfile", Mode: "process", SHA256: "00ff", ProtocolVersion: 1},
		{Kind: "partitioner", Plugin: "hash", Mode: "inprocess", ProtocolVersion: 1},
		{Kind: "replicator", Plugin: "statement", Mode: "process", ProtocolVersion: 1},
	}}}}) {
		mux.Handle(path, h)
	}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) {
		n := polls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, fakeStatus, 100+50*n, 100+50*n)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		n := polls.Load()
		fmt.Fprintf(w, "# HELP plugdb_requests_total x\n# TYPE plugdb_requests_total counter\n"+
			"plugdb_requests_total{code=\"OK\",method=\"Put\"} %d\nplugdb_requests_total{code=\"NotFound\",method=\"Get\"} %d\n"+
			"plugdb_requests_total_other 99999\n", 1000*n, 10*n)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	raw, err := b.DumpURL(ctx, srv.URL+"/ui/", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	root, err := html.Parse(strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*html.Node{}
	rows := map[string][]map[string]string{}
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			if id := attr(n, "id"); id != "" {
				byID[id] = n
			}
			if n.Data == "tr" && attr(n, "class") != "" {
				m := map[string]string{"text": text(n)}
				for _, a := range n.Attr {
					m[a.Key] = a.Val
				}
				rows[attr(n, "class")] = append(rows[attr(n, "class")], m)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	if polls, _ := strconv.Atoi(attr(byID["state"], "data-polls")); polls < 2 || strings.Contains(attr(byID["state"], "class"), "error") {
		t.Fatalf("state %q after %d polls\n%s", text(byID["state"]), polls, raw)
	}

	parts := map[string]map[string]string{}
	for _, r := range rows["partition"] {
		parts[r["data-keyspace"]+"/"+r["data-partition"]] = r
	}
	if len(parts) != 3 {
		t.Errorf("partitions shown: %v, want default/0, default/1, events/0", parts)
	}
	if r := parts["default/0"]; r["data-leader"] != "10.0.0.1:7101" || r["data-epoch"] != "4" || !strings.Contains(r["text"], "2/2 in sync, 2 needed") {
		t.Errorf("default/0: %v", r)
	}
	if r := parts["events/0"]; r["data-leader"] != "" || !strings.Contains(r["text"], "no leader") {
		t.Errorf("events/0 without a leader: %v", r)
	}
	if got := text(byID["led"]); got != "2 / 3" || !strings.Contains(attr(byID["led"], "class"), "bad") {
		t.Errorf("partitions led: %q (class %q), want 2 / 3 marked bad", got, attr(byID["led"], "class"))
	}
	var lagging bool
	for _, r := range rows["replica"] {
		if r["data-addr"] == "10.0.0.4:7104" && strings.Contains(r["text"], "no") && strings.Contains(r["text"], "4000") && strings.Contains(r["text"], "connection refused") {
			lagging = true
		}
	}
	if len(rows["replica"]) != 4 || !lagging {
		t.Errorf("replicas: %v, want 4 with 10.0.0.4:7104 out of sync, 4000 ms behind, its error", rows["replica"])
	}

	// Counters move by 1000 OK and 10 NotFound requests and 50 LSNs a poll:
	// every rate is above 0, errors far below requests.
	rate := func(id string) float64 {
		v, err := strconv.ParseFloat(attr(byID[id], "data-value"), 64)
		if err != nil {
			t.Errorf("%s: no rate (%q)", id, attr(byID[id], "data-value"))
		}
		return v
	}
	if rps, eps, wps := rate("rps"), rate("eps"), rate("wps"); rps <= 0 || eps <= 0 || eps*50 > rps || wps <= 0 {
		t.Errorf("rates: %v requests/s, %v errors/s, %v LSNs/s", rps, eps, wps)
	}

	plugins := map[string]map[string]string{}
	for _, r := range rows["plugin"] {
		plugins[r["data-keyspace"]+"/"+r["data-kind"]] = r
	}
	if len(plugins) != 6 {
		t.Errorf("plugins shown: %d, want 3 per keyspace", len(plugins))
	}
	if r := plugins["default/engine"]; !strings.Contains(r["text"], "00ff") || !strings.Contains(r["text"], "v1") || !strings.Contains(r["text"], "{sync: batch}") {
		t.Errorf("default/engine: %q, want its pin, protocol v1 and options", r["text"])
	}
	if r := plugins["events/partitioner"]; r["data-plugin"] != "range" || !strings.Contains(r["text"], "not pinned") || !strings.Contains(r["text"], "{splits: m}") {
		t.Errorf("events/partitioner: %v", r)
	}
	if f := rows["failover"]; len(f) != 1 || f[0]["data-from"] != "10.0.0.2:7102" || f[0]["data-to"] != "10.0.0.1:7101" || f[0]["data-epoch"] != "4" {
		t.Errorf("failovers: %v", f)
	}
}

func attr(n *html.Node, key string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	if n == nil {
		return ""
	}
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	rec(n)
	return b.String()
}
