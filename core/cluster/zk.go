package cluster

import (
	"context"

	"github.com/plugdb/plugdb/core/zkserver"
)

// startZkserver starts ZooKeeper from the system's install with core/zkserver:
// server i in dir/zk<i>, its log in dir/zk<i>/zookeeper.log.
func startZkserver(ctx context.Context, dir string, clients []string) (Ensemble, error) {
	return zkserver.Start(ctx, zkserver.Options{Dir: dir, Clients: clients})
}
