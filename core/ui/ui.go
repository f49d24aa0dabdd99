// Package ui is the router's status page: a small web page, served at
// /ui/ beside the REST API, that shows the cluster's topology, plugins,
// recent failovers and throughput and refreshes itself (docs/status-page.md).
//
// The page is three static files embedded in the binary (HTML, plain
// JavaScript and CSS; no framework, nothing fetched from elsewhere), which
// read the router's own endpoints: GET /v1/status for the topology and
// plugins, /metrics for the request counts, and the two this package adds:
// /ui/api/events (the leader changes the router saw) and /ui/api/plugins
// (what the status lacks of the plugins: pinned SHA-256 and protocol
// version).
package ui

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"time"
)

//go:embed assets
var assets embed.FS

// Plugin is one plugin block of a keyspace, as the router's config has it.
type Plugin struct {
	Kind   string `json:"kind"` // engine, partitioner or replicator
	Plugin string `json:"plugin"`
	Mode   string `json:"mode"`
	// SHA256 is the pinned binary's SHA-256 in hex; empty: not pinned.
	SHA256 string `json:"sha256"`
	// ProtocolVersion is the major version of the kind's plugin protocol
	// that this plugdb speaks (the one go-plugin negotiates).
	ProtocolVersion int `json:"protocol_version"`
}

// Keyspace is a keyspace's plugins.
type Keyspace struct {
	Name    string   `json:"name"`
	Plugins []Plugin `json:"plugins"`
}

// Options is what the page's handler serves.
type Options struct {
	// Events are the leader changes to list; nil: none.
	Events *Events
	// Keyspaces are the router's keyspaces with their plugins.
	Keyspaces []Keyspace
	// Started is when the router started.
	Started time.Time
}

// Handlers returns the page's handlers by path, for the router's HTTP
// address: /ui/ (the page and its API) and / (a redirect to /ui/; only the
// root path itself, every other path stays the REST gateway's).
func Handlers(o Options) map[string]http.Handler {
	static, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded folder exists: a build error otherwise
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ui/", http.StripPrefix("/ui/", noCache(http.FileServerFS(static))))
	mux.HandleFunc("GET /ui/api/events", func(w http.ResponseWriter, _ *http.Request) {
		var body struct {
			Events  []Event `json:"events"`
			Total   int64   `json:"total"`
			Started string  `json:"started"`
			// Now is the router's clock, which the page measures rates by
			// (a browser's own clock may run on virtual time, as headless
			// Chromium's does).
			Now string `json:"now"`
		}
		body.Events, body.Total = []Event{}, 0
		if o.Events != nil {
			body.Events, body.Total = o.Events.Recent()
		}
		body.Started = o.Started.UTC().Format(time.RFC3339)
		body.Now = time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
		writeJSON(w, body)
	})
	mux.HandleFunc("GET /ui/api/plugins", func(w http.ResponseWriter, _ *http.Request) {
		ks := o.Keyspaces
		if ks == nil {
			ks = []Keyspace{}
		}
		writeJSON(w, map[string]any{"keyspaces": ks})
	})
	return map[string]http.Handler{
		"/ui/": mux,
		"/{$}": http.RedirectHandler("/ui/", http.StatusFound),
	}
}

// noCache asks browsers to fetch the page again after an upgrade.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
