package plugins

import (
	"os"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/plugdb/plugdb/engines"
	"github.com/plugdb/plugdb/partitioners"
	"github.com/plugdb/plugdb/replicators"
)

// ServeConfig says what a plugin process serves. Set exactly one kind.
type ServeConfig struct {
	// Engine opens the storage engine this plugin serves.
	Engine engines.OpenFunc
	// Partitioner opens the partitioner this plugin serves.
	Partitioner partitioners.OpenFunc
	// Replicator opens the replicator this plugin serves.
	Replicator replicators.OpenFunc
	// Logger is the plugin's logger; by default hclog JSON on stderr, which the
	// host re-emits under the plugin's name.
	Logger hclog.Logger
}

// Serve serves the plugin and returns when the host is done with it. It is the
// one call a plugin's main makes:
//
//	func main() { plugins.Serve(plugins.ServeConfig{Engine: myengine.Open}) }
//	func main() { plugins.Serve(plugins.ServeConfig{Partitioner: mypartitioner.Open}) }
//	func main() { plugins.Serve(plugins.ServeConfig{Replicator: myreplicator.Open}) }
//
// Run by hand rather than by a plugdb host, it prints a message and exits.
func Serve(cfg ServeConfig) {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Output: os.Stderr, JSONFormat: true, Level: hclog.Info})
	}
	sets := map[int]goplugin.PluginSet{}
	add := func(kindSets map[int]goplugin.PluginSet) {
		for v, set := range kindSets {
			if sets[v] == nil {
				sets[v] = goplugin.PluginSet{}
			}
			for name, p := range set {
				sets[v][name] = p
			}
		}
	}
	if cfg.Engine != nil {
		add(EnginePluginSet(cfg.Engine, logger))
	}
	if cfg.Partitioner != nil {
		add(PartitionerPluginSet(cfg.Partitioner, logger))
	}
	if cfg.Replicator != nil {
		add(ReplicatorPluginSet(cfg.Replicator, logger))
	}
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		exitWithParent(logger, done)
	}()
	defer func() {
		close(done)
		<-watched
	}()
	goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: sets,
		GRPCServer:       goplugin.DefaultGRPCServer,
		Logger:           logger,
	})
}

// parentPoll is how often exitWithParent checks that the host is alive.
const parentPoll = 500 * time.Millisecond

// exitWithParent ends the plugin when its host dies (the host also sets
// Pdeathsig on Linux; this covers a host whose launching thread is gone and
// other systems). It returns when done is closed, as Serve returns.
func exitWithParent(logger hclog.Logger, done <-chan struct{}) {
	parent := os.Getppid()
	tick := time.NewTicker(parentPoll)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-tick.C:
		}
		if os.Getppid() != parent {
			logger.Warn("host process is gone; plugin exiting")
			os.Exit(1)
		}
	}
}
