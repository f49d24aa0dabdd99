package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var known = Known{Engines: []string{"rowfile"}, Partitioners: []string{"hash"}, Replicators: []string{"none"}}

func TestAuthFileFromFileAndEnv(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "zk.auth")
	if err := os.WriteFile(creds, []byte("plugdb:s3cret:with:colons\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := mustLoad(t, Source{File: writeFile(t, "zookeeper: {auth_file: "+creds+"}\n")})
	if c.ZooKeeper.AuthFile != creds {
		t.Fatalf("zookeeper.auth_file = %q, want %q", c.ZooKeeper.AuthFile, creds)
	}
	if err := c.Validate(known); err != nil {
		t.Fatal(err)
	}
	user, password, err := ReadAuthFile(c.ZooKeeper.AuthFile)
	if err != nil || user != "plugdb" || password != "s3cret:with:colons" {
		t.Fatalf("ReadAuthFile = %q, %q, %v", user, password, err)
	}
	c = mustLoad(t, Source{Env: []string{"PLUGDB_ZOOKEEPER_AUTH_FILE=" + creds}})
	if c.ZooKeeper.AuthFile != creds {
		t.Fatalf("PLUGDB_ZOOKEEPER_AUTH_FILE: zookeeper.auth_file = %q", c.ZooKeeper.AuthFile)
	}
	if Default().ZooKeeper.AuthFile != "" {
		t.Fatal("credentials by default")
	}
}

func TestAuthFileBadValues(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, content, want string }{
		{"empty", "", "the file is empty"},
		{"no-colon", "plugdb\n", "no ':' between user and password"},
		{"no-user", ":pw\n", "the user is empty"},
		{"no-password", "plugdb:\n", "the password is empty"},
		{"two-lines", "a:b\nc:d\n", "more than one line"},
		{"space-user", "my user:pw", `the user holds ' '`},
		{"padded-password", "plugdb: pw", "the password starts or ends with a space"},
		{"missing", "", "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, tc.name)
			if tc.name != "missing" {
				if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c := mustLoad(t, Source{Env: []string{"PLUGDB_ZOOKEEPER_AUTH_FILE=" + path}})
			err := c.Validate(known)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "zookeeper.auth_file ") || !strings.Contains(msg, tc.want) || !strings.Contains(msg, "allowed: empty") || !strings.Contains(msg, "user:password") {
				t.Fatalf("error %q: want the key, %q and the allowed form", msg, tc.want)
			}
			if tc.content != "" && strings.Contains(msg, "pw") {
				t.Fatalf("error %q shows the file's content", msg)
			}
		})
	}
	if _, err := Load(Source{Env: []string{"PLUGDB_ZOOKEEPER_AUTH_FILE= "}}); err == nil || !strings.Contains(err.Error(), "blank") {
		t.Fatalf("blank path: %v", err)
	}
}
