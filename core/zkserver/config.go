package zkserver

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Session timeouts the servers allow (ZooKeeper clamps a client's request
// into this range).
const (
	minSessionTimeout = time.Second
	maxSessionTimeout = 30 * time.Second
)

// Offsets of the default peer ports from a server's client port.
const (
	quorumOffset   = 10000
	electionOffset = 20000
)

// PeerPorts are the loopback ports ensemble members talk to each other on.
type PeerPorts struct {
	// Quorum is where the leader listens for its followers.
	Quorum int
	// Election is where every member listens for leader election.
	Election int
}

// defaultPeers chooses the peer ports of an ensemble. The rule: for a client
// port p, Quorum is p+10000 and Election is p+20000, or p-10000 and p-20000
// when p+20000 would pass 65535 (clients 2181..2183 get 12181..12183 and
// 22181..22183). A port that is taken, or that another member already uses,
// is replaced by a free loopback port the kernel picks, so the rule holds
// "when possible".
func defaultPeers(clients []int) ([]PeerPorts, error) {
	used := map[int]bool{}
	for _, p := range clients {
		used[p] = true
	}
	take := func(want int) (int, error) {
		if want > 1024 && want <= 65535 && !used[want] && portFree(loopback, want) {
			used[want] = true
			return want, nil
		}
		for range 10 {
			p, err := freePort()
			if err != nil {
				return 0, err
			}
			if !used[p] {
				used[p] = true
				return p, nil
			}
		}
		return 0, fmt.Errorf("no free loopback port")
	}
	peers := make([]PeerPorts, len(clients))
	for i, p := range clients {
		q, e := p+quorumOffset, p+electionOffset
		if e > 65535 {
			q, e = p-quorumOffset, p-electionOffset
		}
		var err error
		if peers[i].Quorum, err = take(q); err != nil {
			return nil, err
		}
		if peers[i].Election, err = take(e); err != nil {
			return nil, err
		}
	}
	return peers, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago: it
// listens on 127.0.0.1:0, takes the port and closes.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// portFree reports whether host:port can be listened on now.
func portFree(host string, port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// writeConfig writes s's zoo.cfg, log4j.properties and data/myid.
func (e *Ensemble) writeConfig(s *server) error {
	if err := os.MkdirAll(s.dataDir(), 0o755); err != nil {
		return err
	}
	tick := e.tick.Milliseconds()
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by plugdb (core/zkserver) on every start; edits are lost.
tickTime=%d
initLimit=20
syncLimit=10
dataDir=%s
clientPort=%d
clientPortAddress=%s
minSessionTimeout=%d
maxSessionTimeout=%d
# Every client comes from 127.0.0.1: no per-address connection limit.
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
`, tick, s.dataDir(), s.client, s.host, minSessionTimeout.Milliseconds(), maxSessionTimeout.Milliseconds())
	if len(e.servers) > 1 {
		for _, o := range e.servers {
			fmt.Fprintf(&b, "server.%d=%s:%d:%d\n", o.id, o.host, o.peer.Quorum, o.peer.Election)
		}
	}
	files := map[string]string{
		s.configPath():                           b.String(),
		filepath.Join(s.dir, "log4j.properties"): log4jProperties,
		filepath.Join(s.dataDir(), "myid"):       strconv.Itoa(s.id) + "\n",
	}
	for path, content := range files {
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// log4jProperties sends ZooKeeper's log (log4j 1.2, as Debian's 3.8 uses) to
// ${zookeeper.log.dir}/${zookeeper.log.file}, never to stdout.
const log4jProperties = `# Written by plugdb (core/zkserver).
log4j.rootLogger=${zookeeper.root.logger}
log4j.appender.ROLLINGFILE=org.apache.log4j.RollingFileAppender
log4j.appender.ROLLINGFILE.Threshold=INFO
log4j.appender.ROLLINGFILE.File=${zookeeper.log.dir}/${zookeeper.log.file}
log4j.appender.ROLLINGFILE.MaxFileSize=10MB
log4j.appender.ROLLINGFILE.MaxBackupIndex=3
log4j.appender.ROLLINGFILE.layout=org.apache.log4j.PatternLayout
log4j.appender.ROLLINGFILE.layout.ConversionPattern=%d{ISO8601} - %-5p [%t:%C{1}@%L] - %m%n
`

// javaArgs is the command line of s: the JVM runs QuorumPeerMain directly
// (not zkServer.sh) so the process we start is the server.
func (e *Ensemble) javaArgs(s *server) []string {
	return []string{
		"-Xmx256m",
		"-XX:+UseSerialGC",
		"-XX:+ExitOnOutOfMemoryError",
		"-Djava.net.preferIPv4Stack=true",
		// No -Dcom.sun.management.jmxremote: JMX stays in process, no port.
		"-Dzookeeper.jmx.log4j.disable=true",
		"-Dzookeeper.admin.enableServer=false",
		"-Dzookeeper.log.dir=" + s.dir,
		"-Dzookeeper.log.file=" + logFile,
		"-Dzookeeper.root.logger=INFO,ROLLINGFILE",
		"-Dlog4j.configuration=file:" + filepath.Join(s.dir, "log4j.properties"),
		"-cp", strings.Join(e.install.ClassPath, string(os.PathListSeparator)),
		"org.apache.zookeeper.server.quorum.QuorumPeerMain",
		s.configPath(),
	}
}
