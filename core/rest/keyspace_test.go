package rest

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/plugdb/plugdb/core/api"
	"github.com/plugdb/plugdb/core/loader"
	"github.com/plugdb/plugdb/core/local"
	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/engines/memory"
	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

// startKeyspaces serves two keyspaces over in-process memory partitions: "default"
// (1 partition) and "events" (3 partitions), through api.NewKeyspaceServer.
func startKeyspaces(t *testing.T) *env {
	t.Helper()
	l := &loader.Loader{Self: os.Args[0], Engines: map[string]engines.OpenFunc{"memory": memory.Open}}
	backends := map[string]api.Backend{}
	for name, n := range map[string]int{api.DefaultKeyspace: 1, "events": 3} {
		b, err := local.Open(context.Background(), l, loader.Block{Plugin: "memory", Mode: loader.ModeInProcess}, t.TempDir(), n,
			local.Info{Cluster: "t", Addr: "x", Engine: &plugdbv1.Plugin{Plugin: "memory", Mode: "inprocess"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		backends[name] = b
	}
	return startServer(t, api.NewKeyspaceServer(backends))
}

// TestKeyspaceRoutes: every /v1/keyspaces/{keyspace}/… route reaches the keyspace it
// names, and only it.
func TestKeyspaceRoutes(t *testing.T) {
	e := startKeyspaces(t)
	const ev = "/v1/keyspaces/events"
	e.expect(e.do(http.MethodPut, ev+"/kv/a/b", "", `{"value":"1"}`), 200, "")
	e.expect(e.do(http.MethodPut, ev+"/kv/a%2Fc?ack=async", "", `{"value":"2"}`), 200, "")
	e.expect(e.do(http.MethodPost, ev+"/kv", "", `{"key":"c","value":"3"}`), 200, "")
	e.expectError(e.do(http.MethodPost, ev+"/kv", "", `{"key":"c","value":"3"}`), 409, codes.AlreadyExists, "")
	e.expect(e.do(http.MethodPatch, ev+"/kv/c", "", `{"value":"4"}`), 200, "")
	e.expect(e.do(http.MethodPost, ev+"/batch?ack=async", "", `{"ops":[{"op":"put","key":"d","value":"5"},{"op":"put","key":"e","value":"6"}]}`), 200, "")
	e.expect(e.do(http.MethodDelete, ev+"/kv/e?ack=async", "", ""), 200, "")
	// The ack reaches the backend (one copy: sync is refused).
	e.expectError(e.do(http.MethodPut, ev+"/kv/g?ack=sync", "", `{"value":"8"}`), 400, codes.InvalidArgument, "ack sync needs a cluster")
	// A body's keyspace does not override the path's.
	e.expect(e.do(http.MethodPut, ev+"/kv/f", "", `{"value":"7","keyspace":"default"}`), 200, "")

	r := e.do(http.MethodGet, ev+"/kv/c?consistency=stale", "", "")
	if r.code != 200 || !strings.Contains(r.body, `"key":"c","value":"4"`) {
		t.Errorf("GET %s/kv/c: %d %s", ev, r.code, r.body)
	}
	for _, k := range []string{"a/b", "c", "d", "f"} {
		// The default keyspace has none of them.
		e.expectError(e.do(http.MethodGet, "/v1/kv/"+escapeKey(k, true), "", ""), 404, codes.NotFound, "")
		e.expect(e.do(http.MethodGet, ev+"/kv/"+escapeKey(k, true), "", ""), 200, "")
	}
	e.expectError(e.do(http.MethodGet, ev+"/kv/e", "", ""), 404, codes.NotFound, "")
	// And the default keyspace's routes keep to it.
	e.expect(e.do(http.MethodPut, "/v1/kv/z", "", `{"value":"0"}`), 200, "")
	e.expect(e.do(http.MethodGet, "/v1/keyspaces/default/kv/z", "", ""), 200, "")
	e.expectError(e.do(http.MethodGet, ev+"/kv/z", "", ""), 404, codes.NotFound, "")

	// Status: the top level describes the named keyspace, keyspaces lists both.
	var st struct {
		Partitions []json.RawMessage `json:"partitions"`
		Keyspaces  []struct {
			Name       string            `json:"name"`
			Partitions []json.RawMessage `json:"partitions"`
		} `json:"keyspaces"`
	}
	for path, want := range map[string]int{ev + "/status": 3, "/v1/status": 1, "/v1/keyspaces/default/status": 1} {
		r := e.do(http.MethodGet, path, "", "")
		if r.code != 200 || r.header.Get("Content-Type") != MIMEJSON {
			t.Fatalf("GET %s: %d %s", path, r.code, r.body)
		}
		if err := json.Unmarshal([]byte(r.body), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Partitions) != want || len(st.Keyspaces) != 2 || st.Keyspaces[0].Name != "default" || st.Keyspaces[1].Name != "events" ||
			len(st.Keyspaces[0].Partitions) != 1 || len(st.Keyspaces[1].Partitions) != 3 {
			t.Errorf("GET %s: %s", path, r.body)
		}
	}
}

func TestKeyspaceScan(t *testing.T) {
	e := startKeyspaces(t)
	const ev = "/v1/keyspaces/events"
	for _, k := range []string{"user:1", "user:2", "user:3", "usex", "order/1"} {
		e.expect(e.do(http.MethodPut, ev+"/kv/"+escapeKey(k, false), "", `{"value":"v"}`), 200, "")
	}
	e.expect(e.do(http.MethodPut, "/v1/kv/user:0", "", `{"value":"default"}`), 200, "")
	check := func(path string, want ...string) {
		t.Helper()
		r := e.do(http.MethodGet, path, "", "")
		if r.code != 200 || r.header.Get("Content-Type") != MIMENDJSON {
			t.Errorf("GET %s: %d %s %s", path, r.code, r.header.Get("Content-Type"), r.body)
			return
		}
		var keys []string
		for _, line := range scanLines(t, r) {
			var kv struct{ Key string }
			if err := json.Unmarshal([]byte(line), &kv); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, kv.Key)
		}
		if strings.Join(keys, " ") != strings.Join(want, " ") {
			t.Errorf("GET %s: keys %q, want %q", path, keys, want)
		}
	}
	check(ev+"/kv?prefix=user:&limit=2", "user:1", "user:2")
	check(ev+"/kv?prefix_base64=dXNlcjoz", "user:3")
	check(ev+"/kv?start=order&end=user:2&consistency=strong", "order/1", "user:1")
	check(ev+"/kv", "order/1", "user:1", "user:2", "user:3", "usex")
	check(ev + "/kv?prefix=nothing")
	check("/v1/kv?prefix=user:", "user:0")
	check("/v1/keyspaces/default/kv?prefix=user:", "user:0")

	e.expectError(e.do(http.MethodGet, ev+"/kv?limit=x", "", ""), 400, codes.InvalidArgument, `query parameter "limit": expected an integer, got "x"`)
	e.expectError(e.do(http.MethodGet, ev+"/kv?prefx=a", "", ""), 400, codes.InvalidArgument,
		`unknown query parameter "prefx" for GET /v1/keyspaces/{keyspace}/kv (allowed: prefix, start, end, limit, consistency, prefix_base64, start_base64, end_base64)`)
	e.expectError(e.do(http.MethodGet, ev+"/kv?prefix=a&prefix_base64=YQ==", "", ""), 400, codes.InvalidArgument, `"prefix" and "prefix_base64" both given`)
	e.expectError(e.do(http.MethodGet, ev+"/kv?consistency=weak", "", ""), 400, codes.InvalidArgument, "allowed: strong")
}

func TestKeyspaceErrors(t *testing.T) {
	e := startKeyspaces(t)
	const allowed = `keyspace "nosuch": allowed values are default, events`
	const ns = "/v1/keyspaces/nosuch"
	e.expectError(e.do(http.MethodGet, ns+"/kv/k", "", ""), 400, codes.InvalidArgument, allowed)
	e.expectError(e.do(http.MethodPut, ns+"/kv/k", "", `{"value":"1"}`), 400, codes.InvalidArgument, allowed)
	e.expectError(e.do(http.MethodPost, ns+"/kv", "", `{"key":"k","value":"1"}`), 400, codes.InvalidArgument, allowed)
	e.expectError(e.do(http.MethodPatch, ns+"/kv/k", "", `{"value":"1"}`), 400, codes.InvalidArgument, allowed)
	e.expectError(e.do(http.MethodDelete, ns+"/kv/k", "", ""), 400, codes.InvalidArgument, allowed)
	e.expectError(e.do(http.MethodGet, ns+"/kv?prefix=a", "", ""), 400, codes.InvalidArgument, allowed)
	e.expectError(e.do(http.MethodPost, ns+"/batch", "", `{"ops":[{"op":"put","key":"k","value":"1"}]}`), 400, codes.InvalidArgument, allowed)
	e.expectError(e.do(http.MethodGet, ns+"/status", "", ""), 400, codes.InvalidArgument, allowed)
	// The keyspace is named by the path only.
	e.expectError(e.do(http.MethodGet, "/v1/kv/k?keyspace=events", "", ""), 400, codes.InvalidArgument, `query parameter "keyspace" is not supported`)
	e.expectError(e.do(http.MethodGet, "/v1/status?keyspace=events", "", ""), 400, codes.InvalidArgument, `query parameter "keyspace" is not supported`)
	// The request errors of the /v1/… routes.
	const ev = "/v1/keyspaces/events"
	e.expectError(e.do(http.MethodPut, ev+"/kv/k", "", `{"valeu":"x"}`), 400, codes.InvalidArgument, `unknown field "valeu" in plugdb.v1.PutRequest`)
	e.expectError(e.do(http.MethodPut, ev+"/kv/k", "", `{"value":"x"} {}`), 400, codes.InvalidArgument, "after the JSON value")
	e.expectError(e.do(http.MethodPut, ev+"/kv/k?ack=never", "", `{"value":"x"}`), 400, codes.InvalidArgument, `query parameter "ack": "never" is not supported`)
	e.expectError(e.do(http.MethodGet, ev+"/kv/k?ack=sync", "", ""), 400, codes.InvalidArgument, `query parameter "ack" applies to writes`)
	// Routing: 405 with the twin's Allow header, 404 for the rest.
	for path, allow := range map[string]string{
		ev + "/status": "GET", ev + "/kv": "GET, POST", ev + "/kv/k": "DELETE, GET, PATCH, PUT", ev + "/batch": "POST",
	} {
		r := e.do("OPTIONS", path, "", "")
		e.expectError(r, 405, codes.Unimplemented, "method OPTIONS is not allowed on "+path)
		if got := r.header.Get("Allow"); got != allow {
			t.Errorf("OPTIONS %s: Allow %q, want %q", path, got, allow)
		}
	}
	e.expectError(e.do(http.MethodGet, ev+"/openapi.json", "", ""), 404, codes.NotFound, "no route for GET")
	e.expectError(e.do(http.MethodGet, ev+"/nothing", "", ""), 404, codes.NotFound, "no route for GET")
}

func TestKeyspaceOpenAPI(t *testing.T) {
	doc, err := OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Paths map[string]map[string]struct {
			Produces   []string `json:"produces"`
			Parameters []struct {
				Name string `json:"name"`
				In   string `json:"in"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	params := func(path, method string) string {
		var out []string
		for _, p := range d.Paths[path][method].Parameters {
			out = append(out, p.In+":"+p.Name)
		}
		return strings.Join(out, " ")
	}
	for _, twin := range [][3]string{
		{"/v1/kv/{key}", "/v1/keyspaces/{keyspace}/kv/{key}", "get"},
		{"/v1/kv/{key}", "/v1/keyspaces/{keyspace}/kv/{key}", "put"},
		{"/v1/kv/{key}", "/v1/keyspaces/{keyspace}/kv/{key}", "patch"},
		{"/v1/kv/{key}", "/v1/keyspaces/{keyspace}/kv/{key}", "delete"},
		{"/v1/kv", "/v1/keyspaces/{keyspace}/kv", "get"},
		{"/v1/kv", "/v1/keyspaces/{keyspace}/kv", "post"},
		{"/v1/batch", "/v1/keyspaces/{keyspace}/batch", "post"},
		{"/v1/status", "/v1/keyspaces/{keyspace}/status", "get"},
	} {
		def, ks, m := twin[0], twin[1], twin[2]
		if d.Paths[ks][m].Parameters == nil && d.Paths[def][m].Parameters != nil {
			t.Errorf("%s %s: missing", m, ks)
			continue
		}
		want := strings.TrimSpace("path:keyspace " + params(def, m))
		if got := params(ks, m); got != want {
			t.Errorf("%s %s: parameters %q, want %q", m, ks, got, want)
		}
		if strings.Contains(params(def, m), "query:keyspace") {
			t.Errorf("%s %s: a keyspace query parameter", m, def)
		}
		if got, want := strings.Join(d.Paths[ks][m].Produces, ","), strings.Join(d.Paths[def][m].Produces, ","); got != want {
			t.Errorf("%s %s: produces %q, want %q", m, ks, got, want)
		}
	}
	if got := strings.Join(d.Paths["/v1/keyspaces/{keyspace}/kv"]["get"].Produces, ","); got != MIMENDJSON {
		t.Errorf("scan of a keyspace produces %q", got)
	}
}
