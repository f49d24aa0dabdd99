package zkserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
)

// ErrNotInstalled is wrapped by Find's error when java or ZooKeeper is missing.
var ErrNotInstalled = errors.New("not installed")

// Debian's layout (packages zookeeper and libzookeeper-java, ZooKeeper 3.8).
// Debian starts the server with CLASSPATH="/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
// (/usr/share/zookeeper/bin/zkEnv.sh); the jar's manifest Class-Path names its
// dependencies in /usr/share/java. That classpath has no SLF4J binding, so the
// server would log nothing: we add Debian's slf4j-log4j12 and log4j 1.2 jars
// (both dependencies of libzookeeper-java) and our own log4j.properties instead
// of /etc/zookeeper/conf.
const (
	debianJar     = "/usr/share/java/zookeeper.jar"
	debianHome    = "/usr/share/zookeeper"
	debianJavaDir = "/usr/share/java"
	debianJava    = "/usr/bin/java"
)

// logJars bind ZooKeeper's SLF4J logging to log4j 1.2, in debianJavaDir.
var logJars = []string{"slf4j-log4j12.jar", "log4j-1.2.jar"}

// Install is a ZooKeeper installation found on this machine.
type Install struct {
	// Java is the java binary.
	Java string
	// ClassPath is the server's classpath, ZooKeeper's jar first.
	ClassPath []string
	// Version is ZooKeeper's version (such as "3.8.0"), "" when unknown.
	Version string
	// Logging reports whether a log4j binding is on ClassPath; without it the
	// server writes no log file.
	Logging bool
}

// Find locates java and Debian's ZooKeeper. Its error wraps ErrNotInstalled
// and says how to install what is missing.
func Find() (Install, error) {
	return find(debianJar, debianJavaDir, javaCandidates())
}

// javaCandidates lists where java may be, in order: $JAVA_HOME/bin/java, PATH,
// /usr/bin/java.
func javaCandidates() []string {
	var c []string
	if h := os.Getenv("JAVA_HOME"); h != "" {
		c = append(c, filepath.Join(h, "bin", "java"))
	}
	if p, err := exec.LookPath("java"); err == nil {
		c = append(c, p)
	}
	return append(c, debianJava)
}

var versionedJar = regexp.MustCompile(`^zookeeper-(\d+\.\d+\.\d+)\.jar$`)

func find(jar, javaDir string, javas []string) (Install, error) {
	if !isFile(jar) {
		return Install{}, fmt.Errorf("ZooKeeper not found (looked in %s, %s): install it with `sudo apt-get install zookeeper` (Debian/Ubuntu): %w",
			jar, debianHome, ErrNotInstalled)
	}
	in := Install{ClassPath: []string{jar}}
	for _, j := range javas {
		if isExecutable(j) {
			in.Java = j
			break
		}
	}
	if in.Java == "" {
		return Install{}, fmt.Errorf("java not found (looked in %s): install it with `sudo apt-get install default-jre-headless` (Debian/Ubuntu): %w",
			strings.Join(javas, ", "), ErrNotInstalled)
	}
	in.Logging = true
	for _, name := range logJars {
		p := filepath.Join(javaDir, name)
		if !isFile(p) {
			in.Logging = false
			continue
		}
		in.ClassPath = append(in.ClassPath, p)
	}
	// Debian links zookeeper-<version>.jar to zookeeper.jar.
	if ents, err := os.ReadDir(filepath.Dir(jar)); err == nil {
		for _, e := range ents {
			if m := versionedJar.FindStringSubmatch(e.Name()); m != nil {
				in.Version = m[1]
				break
			}
		}
	}
	return in, nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

func isExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}
