package ui

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestEventsKeepsTheLastNewestFirst(t *testing.T) {
	s := NewEvents(3)
	if got, total := s.Recent(); len(got) != 0 || total != 0 {
		t.Fatalf("empty: %v, %d", got, total)
	}
	for i := range 5 {
		s.Add(Event{Partition: i})
	}
	got, total := s.Recent()
	if total != 5 || len(got) != 3 || got[0].Partition != 4 || got[1].Partition != 3 || got[2].Partition != 2 {
		t.Errorf("after 5 adds to 3: %+v (total %d), want partitions 4, 3, 2 and total 5", got, total)
	}
	s2 := NewEvents(0)
	s2.Add(Event{Partition: 1})
	s2.Add(Event{Partition: 2})
	if got, _ := s2.Recent(); len(got) != 2 || got[0].Partition != 2 || cap(s2.ring) != DefaultEvents {
		t.Errorf("default capacity: %+v, cap %d", got, cap(s2.ring))
	}
}

// serve is the handlers in front of a stand-in for the REST gateway, as
// server.Extra mounts them.
func serve(t *testing.T, o Options) *httptest.Server {
	mux := http.NewServeMux()
	for path, h := range Handlers(o) {
		mux.Handle(path, h)
	}
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "gateway "+r.URL.Path, http.StatusNotFound)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestHandlers(t *testing.T) {
	events := NewEvents(2)
	started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	events.Add(Event{Time: started.Add(time.Minute), Keyspace: "default", Partition: 1, From: "a:1", FromEpoch: 1, To: "b:1", Epoch: 2})
	srv := serve(t, Options{Events: events, Started: started, Keyspaces: []Keyspace{{Name: "default", Plugins: []Plugin{
		{Kind: "engine", Plugin: "rowfile", Mode: "process", SHA256: "ab12", ProtocolVersion: 1}}}}})
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	code, body, _ := get(t, srv.Client(), srv.URL+"/ui/")
	if code != 200 || !strings.Contains(body, `<script src="app.js">`) || !strings.Contains(body, `id="topology"`) {
		t.Errorf("/ui/: %d\n%s", code, body)
	}
	for path, want := range map[string]string{"/ui/app.js": "/v1/status", "/ui/style.css": "font"} {
		if code, body, h := get(t, srv.Client(), srv.URL+path); code != 200 || !strings.Contains(body, want) || h.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: %d, Cache-Control %q, has %q: %v", path, code, h.Get("Cache-Control"), want, strings.Contains(body, want))
		}
	}
	// Nothing is fetched from elsewhere: the page works offline.
	for _, path := range []string{"/ui/", "/ui/app.js", "/ui/style.css"} {
		if _, body, _ := get(t, srv.Client(), srv.URL+path); strings.Contains(body, "http://") || strings.Contains(body, "https://") || strings.Contains(body, "//cdn") {
			t.Errorf("%s refers to another site", path)
		}
	}

	code, body, h := get(t, srv.Client(), srv.URL+"/ui/api/events")
	var ev struct {
		Events  []Event `json:"events"`
		Total   int64   `json:"total"`
		Started string  `json:"started"`
	}
	if err := json.Unmarshal([]byte(body), &ev); code != 200 || err != nil || h.Get("Content-Type") != "application/json" {
		t.Fatalf("/ui/api/events: %d %v %q\n%s", code, err, h.Get("Content-Type"), body)
	}
	if ev.Total != 1 || len(ev.Events) != 1 || ev.Events[0].To != "b:1" || ev.Events[0].Epoch != 2 || ev.Started != "2026-01-02T03:04:05Z" {
		t.Errorf("/ui/api/events: %+v", ev)
	}
	if !strings.Contains(body, `"from_epoch":1`) {
		t.Errorf("/ui/api/events: want snake_case fields\n%s", body)
	}
	code, body, _ = get(t, srv.Client(), srv.URL+"/ui/api/plugins")
	if code != 200 || !strings.Contains(body, `"sha256":"ab12"`) || !strings.Contains(body, `"protocol_version":1`) {
		t.Errorf("/ui/api/plugins: %d\n%s", code, body)
	}

	// / redirects to the page; every other path is the gateway's.
	code, _, h = get(t, noRedirect, srv.URL+"/")
	if code != http.StatusFound || h.Get("Location") != "/ui/" {
		t.Errorf("/: %d to %q, want 302 to /ui/", code, h.Get("Location"))
	}
	if code, body, _ := get(t, srv.Client(), srv.URL+"/v1/status"); code != 404 || body != "gateway /v1/status\n" {
		t.Errorf("/v1/status: %d %q, want the gateway's", code, body)
	}
	resp, err := srv.Client().Post(srv.URL+"/ui/api/events", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/api/events: %d, want 405", resp.StatusCode)
	}
}

func TestHandlersWithoutEvents(t *testing.T) {
	srv := serve(t, Options{})
	code, body, _ := get(t, srv.Client(), srv.URL+"/ui/api/events")
	if code != 200 || !strings.Contains(body, `"events":[]`) || !strings.Contains(body, `"total":0`) {
		t.Errorf("/ui/api/events without events: %d\n%s", code, body)
	}
	if code, body, _ := get(t, srv.Client(), srv.URL+"/ui/api/plugins"); code != 200 || !strings.Contains(body, `"keyspaces":[]`) {
		t.Errorf("/ui/api/plugins without keyspaces: %d\n%s", code, body)
	}
}
