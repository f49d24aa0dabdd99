package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugdb/plugdb/core/config"
	"github.com/plugdb/plugdb/internal/testutil"
)

// childSays waits until the log of a child (router.log) holds want.
func childSays(t *testing.T, dir, want string) {
	t.Helper()
	var log []byte
	testutil.WaitFor(t, 10*time.Second, func() bool {
		log, _ = os.ReadFile(filepath.Join(dir, "logs", "router.log"))
		return strings.Contains(string(log), want)
	}, "router.log to say "+want)
}

// TestStartMakesCredentials: with no zookeeper.auth_file, Start makes
// random credentials in the cluster folder, readable by their owner only,
// hands them to the children, records them, and keeps them for the next
// start; a config's file is used as it is.
func TestStartMakesCredentials(t *testing.T) {
	opts, _ := testOptions(t, 1)
	c := startTest(t, opts)
	path := filepath.Join(opts.Dir, AuthFile)
	rec, err := ReadRecord(opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ZooKeeperAuth != path {
		t.Fatalf("record names credentials %q, want %q", rec.ZooKeeperAuth, path)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	user, password, err := config.ReadAuthFile(path)
	if err != nil || user != "plugdb" || len(password) < 32 {
		t.Fatalf("credentials %q, password of %d characters, %v; want user plugdb and a long password", user, len(password), err)
	}
	childSays(t, opts.Dir, "auth="+path+"\n")
	first, _ := os.ReadFile(path)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	c = startTest(t, opts)
	if again, _ := os.ReadFile(path); string(again) != string(first) {
		t.Fatal("a second start in the folder made new credentials")
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}

	// The config's credentials file.
	own := filepath.Join(t.TempDir(), "zk.auth")
	if err := os.WriteFile(own, []byte("me:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, _ = testOptions(t, 1)
	opts.Config.ZooKeeper.AuthFile = own
	startTest(t, opts)
	if rec, err := ReadRecord(opts.Dir); err != nil || rec.ZooKeeperAuth != own {
		t.Fatalf("record names credentials %q, %v; want the config's %s", rec.ZooKeeperAuth, err, own)
	}
	childSays(t, opts.Dir, "auth="+own+"\n")
	if _, err := os.Stat(filepath.Join(opts.Dir, AuthFile)); !os.IsNotExist(err) {
		t.Errorf("credentials made although the config names a file: %v", err)
	}
}

// TestStartRefusesBadCredentialsFile: a credentials file in the folder that
// holds no credentials stops Start, naming it.
func TestStartRefusesBadCredentialsFile(t *testing.T) {
	opts, _ := testOptions(t, 1)
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(opts.Dir, AuthFile)
	if err := os.WriteFile(path, []byte("no colon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(t.Context(), opts)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "user:password") {
		t.Fatalf("Start with a bad %s: %v; want an error naming it and the allowed form", AuthFile, err)
	}
}
