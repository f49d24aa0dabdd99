package main

import (
	"net/http"
	"time"

	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/metrics"
	"github.com/plugdb/plugdb/core/server"
	"github.com/plugdb/plugdb/core/ui"
	"github.com/plugdb/plugdb/plugins"
)

// routerUI is the router's status page (core/ui, docs/status-page.md):
// its HTTP handlers, and the hook that lists the leader changes the
// router's metrics watch sees as recent failovers.
type routerUI struct {
	handlers map[string]http.Handler
	events   *ui.Events
}

// newRouterUI makes the status page of a router serving routers.
func newRouterUI(routers []*keyspaceRouter) *routerUI {
	u := &routerUI{events: ui.NewEvents(ui.DefaultEvents)}
	keyspaces := make([]ui.Keyspace, len(routers))
	for i, kr := range routers {
		keyspaces[i] = ui.Keyspace{Name: keyspaceLabel(kr.cfg.Keyspace), Plugins: []ui.Plugin{
			uiPlugin("engine", kr.cfg.Engine, plugins.EngineProtocolVersion),
			uiPlugin("partitioner", kr.cfg.Partitioner, plugins.PartitionerProtocolVersion),
			uiPlugin("replicator", kr.cfg.Replicator, plugins.ReplicatorProtocolVersion),
		}}
	}
	u.handlers = ui.Handlers(ui.Options{Events: u.events, Keyspaces: keyspaces, Started: time.Now()})
	return u
}

func uiPlugin(kind string, p config.Plugin, version int) ui.Plugin {
	return ui.Plugin{Kind: kind, Plugin: p.Plugin, Mode: pluginInfo(p, p.Mode).GetMode(), SHA256: p.SHA256, ProtocolVersion: version}
}

// onLeaderChange records a leader change the metrics' watch saw.
func (u *routerUI) onLeaderChange(c metrics.LeaderChange) {
	u.events.Add(ui.Event{Time: time.Now().UTC(), Keyspace: c.Keyspace, Partition: c.Partition,
		From: c.From, FromEpoch: c.FromEpoch, To: c.To, Epoch: c.Epoch})
}

// serve adds the page's handlers to x.
func (u *routerUI) serve(x server.Extra) server.Extra {
	if x.HTTP == nil {
		x.HTTP = map[string]http.Handler{}
	}
	for path, h := range u.handlers {
		x.HTTP[path] = h
	}
	return x
}
