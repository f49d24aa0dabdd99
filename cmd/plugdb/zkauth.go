package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/plugdb/plugdb/core/cluster"
	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/core/coord"
)

// coordConfig is the ZooKeeper client config of cfg's cluster and keyspace,
// with the credentials in zookeeper.auth_file, if set.
func coordConfig(cfg config.Config, log hclog.Logger) (coord.Config, error) {
	zcfg := coord.Config{Servers: cfg.ZooKeeper.Servers, SessionTimeout: cfg.ZooKeeper.SessionTimeout,
		Root: cfg.ZooKeeper.Root, Cluster: cfg.Cluster, Keyspace: cfg.Keyspace, Logger: log.Named("zookeeper")}
	if cfg.ZooKeeper.AuthFile != "" {
		user, password, err := config.ReadAuthFile(cfg.ZooKeeper.AuthFile)
		if err != nil {
			return coord.Config{}, fmt.Errorf("zookeeper.auth_file %q: %w", cfg.ZooKeeper.AuthFile, err)
		}
		zcfg.Auth = coord.Credentials{User: user, Password: password}
	}
	return zcfg, nil
}

// connectError adds hint, in parentheses, to err from coord.Connect, unless
// ZooKeeper was reached and refused access: the error says why then.
func connectError(err error, hint string) error {
	if errors.Is(err, coord.ErrNoAuth) {
		return err
	}
	return fmt.Errorf("%w (%s)", err, hint)
}

// clusterZKEnv are the variables that give a process the ZooKeeper of a
// cluster `plugdb cluster up` runs: its servers and credentials file.
func clusterZKEnv(rec cluster.Record) []string {
	env := []string{config.EnvName("zookeeper.servers") + "=" + strings.Join(rec.ZooKeeper, ",")}
	if rec.ZooKeeperAuth != "" {
		env = append(env, config.EnvName("zookeeper.auth_file")+"="+rec.ZooKeeperAuth)
	}
	return env
}
