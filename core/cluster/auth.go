package cluster

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/plugdb/plugdb/core/config"
)

// AuthFile is the credentials file Start makes in the cluster folder when
// the config names none (zookeeper.auth_file): one line plugdb:PASSWORD, a
// random password, readable by its owner only. The children get its path in
// PLUGDB_ZOOKEEPER_AUTH_FILE, so the cluster's znodes carry a digest ACL
// that only holders of the file pass. A later Start in the same folder uses
// it again: ZooKeeper's data there is protected by it.
const AuthFile = "zookeeper.auth"

// authUser is the user of the credentials Start makes.
const authUser = "plugdb"

// clusterAuth returns the credentials file of a cluster in dir: the config's
// (absolute), or dir's AuthFile, made if missing.
func clusterAuth(cfg config.Config, dir string) (string, error) {
	if cfg.ZooKeeper.AuthFile != "" {
		p, err := filepath.Abs(cfg.ZooKeeper.AuthFile)
		if err != nil {
			return "", fmt.Errorf("zookeeper.auth_file %s: %w", cfg.ZooKeeper.AuthFile, err)
		}
		return p, nil
	}
	p := filepath.Join(dir, AuthFile)
	if err := makeAuthFile(p); err != nil {
		return "", fmt.Errorf("ZooKeeper credentials for the cluster: %w", err)
	}
	return p, nil
}

// makeAuthFile writes fresh credentials to path unless it exists, in which
// case it must hold credentials.
func makeAuthFile(path string) error {
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	line := authUser + ":" + base64.RawURLEncoding.EncodeToString(secret) + "\n"
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		if _, _, err := config.ReadAuthFile(path); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// withAuthFile is env with PLUGDB_ZOOKEEPER_AUTH_FILE set to path.
func withAuthFile(env []string, path string) []string {
	name := config.EnvName("zookeeper.auth_file")
	out := make([]string, 0, len(env)+1)
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+path)
}
