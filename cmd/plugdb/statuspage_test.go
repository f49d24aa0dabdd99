package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/plugdb/plugdb/core/bench/report/headless"
	"github.com/plugdb/plugdb/core/zkserver/zktest"
)

// uiScreenshot is where TestStatusPage saves its screenshot of the status
// page; empty: a temporary file. The README's picture is made with
// go test ./cmd/plugdb -run TestStatusPage -ui.screenshot=../../docs/img/status-page.png
var uiScreenshot = flag.String("ui.screenshot", "", "TestStatusPage: save the status page's screenshot to this PNG (relative to cmd/plugdb)")

// pageBudget is the virtual time Chromium gives the status page before it
// reads the DOM: long enough for three polls (one every 2 s), so rates exist.
const pageBudget = 5 * time.Second

// TestStatusPage opens the router's status page in headless Chromium on a
// real cluster (2 partitions × 3 replicas, statement replication, ZooKeeper)
// and checks that it shows what `plugdb status -o json` reports (every
// partition's leader and epoch, every replica's role, the plugins with the
// partitioner's pinned SHA-256), a throughput figure, and, after a leader is
// killed, the failover.
func TestStatusPage(t *testing.T) {
	t.Parallel()
	browser, err := headless.Find()
	if err != nil {
		t.Fatalf("%v (make test-deps installs Debian's chromium)", err)
	}
	bin, err := os.ReadFile(plugdbBin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	pin := hex.EncodeToString(sum[:])
	c := startClusterOn(t, zktest.Shared(t), 2, 3, fmt.Sprintf("{plugin: hash, sha256: %s}", pin), statementRepl("semi-sync"))
	for p := range 2 {
		c.waitInSync(p)
	}
	for i := range 40 {
		if _, err := c.put(fmt.Sprintf("user:%d", i), "v", 10*time.Second); err != nil {
			t.Fatalf("put: %v\n%s", err, c.logs())
		}
	}
	page := "http://" + c.http + "/ui/"

	// / leads to the page.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Get("http://" + c.http + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /: %d to %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}

	load := startPageLoad(c)
	defer load.stop()
	doc, st := dumpSteadyPage(t, c, browser, page)
	wantPageShows(t, doc, st)
	wantPluginsShown(t, doc, st, pin)
	if v, ok := doc.figure("rps"); !ok || v <= 0 {
		t.Errorf("requests/s: %v (shown %v), want a figure above 0 under a write load\n%s", v, ok, doc.raw)
	}
	if _, ok := doc.figure("wps"); !ok {
		t.Errorf("LSNs/s: none shown\n%s", doc.raw)
	}
	if n := len(doc.rows("failover")); n != 0 {
		t.Errorf("%d failovers listed before any", n)
	}

	// A leader killed (SIGKILL to the node and its plugins), a new one
	// elected, the old one back as a follower: the page lists the failover.
	k := c.killLeaderAndRejoin(0)
	c.waitInSync(1)
	doc, st = dumpSteadyPage(t, c, browser, page)
	wantPageShows(t, doc, st)
	var listed bool
	for _, r := range doc.rows("failover") {
		if r["data-partition"] == "0" && r["data-keyspace"] == "default" && r["data-from"] == k.old &&
			r["data-to"] == k.leader && r["data-epoch"] == strconv.FormatUint(k.epoch, 10) {
			listed = true
		}
		if r["data-partition"] != "0" {
			t.Errorf("failover of partition %s listed: only partition 0's leader was killed", r["data-partition"])
		}
	}
	if !listed {
		t.Errorf("failovers listed: %v, want partition 0 from %s to %s in epoch %d\n%s", doc.rows("failover"), k.old, k.leader, k.epoch, doc.raw)
	}

	shot := *uiScreenshot
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "status-page.png")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := browser.ScreenshotURL(ctx, page, shot, 1280, 900, pageBudget); err != nil {
		t.Fatal(err)
	}
	// The leaders' and followers' role badges are drawn.
	_, counts, err := headless.Ink(shot, color.RGBA{0x2e, 0x7d, 0x32, 0xff}, color.RGBA{0x3b, 0x5b, 0xa9, 0xff})
	if err != nil {
		t.Fatal(err)
	}
	if counts[0] < 200 || counts[1] < 400 {
		t.Errorf("screenshot %s: %v pixels of the leader and follower colours, want role badges drawn", shot, counts)
	}
	t.Logf("screenshot: %s", shot)
}

// pageLoad writes through the router until stopped, so the page has
// throughput to show.
type pageLoad struct {
	done chan struct{}
	wg   sync.WaitGroup
}

func startPageLoad(c *testCluster) *pageLoad {
	l := &pageLoad{done: make(chan struct{})}
	l.wg.Go(func() {
		for i := 0; i < 1_000_000; i++ {
			select {
			case <-l.done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			_, _ = c.put(fmt.Sprintf("load:%d", i%500), "v", 5*time.Second)
		}
	})
	return l
}

func (l *pageLoad) stop() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

// cliStatus is `plugdb status -o json` against the cluster's router.
func cliStatus(t *testing.T, c *testCluster) statusJSON {
	t.Helper()
	r := runCLI(t, "status", "-o", "json", "--addr", c.grpc)
	if r.code != 0 {
		t.Fatalf("plugdb status -o json: %v", r)
	}
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("plugdb status -o json: %v\n%s", err, r.stdout)
	}
	return st
}

// dumpSteadyPage loads the page while the cluster's leaders hold still:
// `plugdb status -o json` just before and just after show every partition
// led, by the same replicas in the same roles and epochs, so the page must
// show that status. It tries a few times when they changed in between.
func dumpSteadyPage(t *testing.T, c *testCluster, b headless.Browser, url string) (pageDOM, statusJSON) {
	t.Helper()
	var before, after statusJSON
	for range 3 {
		before = cliStatus(t, c)
		doc := dumpPage(t, b, url)
		after = cliStatus(t, c)
		if roles(before) == roles(after) && allLed(after) {
			return doc, after
		}
	}
	t.Fatalf("the cluster's leaders changed during each of 3 loads of the page; last before %s, after %s\n%s", roles(before), roles(after), c.logs())
	return pageDOM{}, after
}

// roles describes st's partitions: each one's epoch and its replicas' roles.
func roles(st statusJSON) string {
	var b strings.Builder
	for _, ps := range st.Partitions {
		fmt.Fprintf(&b, "partition %d epoch %d:", ps.Partition, ps.Epoch)
		for _, r := range ps.Replicas {
			fmt.Fprintf(&b, " %s %s/%d", r.Addr, r.Role, r.Epoch)
		}
		b.WriteString("; ")
	}
	return b.String()
}

// allLed says whether every partition of st has a leader.
func allLed(st statusJSON) bool {
	for _, ps := range st.Partitions {
		if !slices.ContainsFunc(ps.Replicas, func(r replicaJSON) bool { return r.Role == "leader" }) {
			return false
		}
	}
	return len(st.Partitions) > 0
}

// pageDOM is the status page's DOM as Chromium left it.
type pageDOM struct {
	raw  string
	root *html.Node
}

// dumpPage loads the page and returns its DOM once it polled at least twice
// (so rates exist), trying a few times.
func dumpPage(t *testing.T, b headless.Browser, url string) pageDOM {
	t.Helper()
	var last pageDOM
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		raw, err := b.DumpURL(ctx, url, pageBudget)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		root, err := html.Parse(strings.NewReader(raw))
		if err != nil {
			t.Fatalf("parse the page's DOM: %v", err)
		}
		last = pageDOM{raw: raw, root: root}
		state := last.byID("state")
		polls, _ := strconv.Atoi(attrOf(state, "data-polls"))
		if polls >= 2 && !strings.Contains(attrOf(state, "class"), "error") {
			return last
		}
	}
	t.Fatalf("the page did not poll twice without an error within %v of virtual time, 3 times:\n%s", pageBudget, last.raw)
	return last
}

func attrOf(n *html.Node, key string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

// walk calls f on every element.
func (d pageDOM) walk(f func(*html.Node)) {
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.ElementNode {
			f(n)
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			rec(ch)
		}
	}
	rec(d.root)
}

func (d pageDOM) byID(id string) *html.Node {
	var found *html.Node
	d.walk(func(n *html.Node) {
		if found == nil && attrOf(n, "id") == id {
			found = n
		}
	})
	return found
}

// rows are the attributes of the table rows of class class.
func (d pageDOM) rows(class string) []map[string]string {
	var out []map[string]string
	d.walk(func(n *html.Node) {
		if n.Data == "tr" && attrOf(n, "class") == class {
			m := map[string]string{"text": textOf(n)}
			for _, a := range n.Attr {
				m[a.Key] = a.Val
			}
			out = append(out, m)
		}
	})
	return out
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for ch := n.FirstChild; ch != nil; ch = ch.NextSibling {
			rec(ch)
		}
	}
	rec(n)
	return b.String()
}

// figure is the number a throughput figure shows (its data-value), and
// whether it shows one.
func (d pageDOM) figure(id string) (float64, bool) {
	n := d.byID(id)
	v, err := strconv.ParseFloat(attrOf(n, "data-value"), 64)
	return v, n != nil && err == nil && textOf(n) != "–"
}

// wantPageShows checks that the page shows every partition of st with its
// leader and epoch, and every replica with its role.
func wantPageShows(t *testing.T, d pageDOM, st statusJSON) {
	t.Helper()
	parts := map[string]map[string]string{}
	for _, r := range d.rows("partition") {
		parts[r["data-keyspace"]+"/"+r["data-partition"]] = r
	}
	replicas := map[string]string{}
	for _, r := range d.rows("replica") {
		replicas[r["data-partition"]+"/"+r["data-addr"]] = r["data-role"]
	}
	if len(parts) != len(st.Partitions) {
		t.Errorf("the page shows %d partitions, plugdb status %d", len(parts), len(st.Partitions))
	}
	for _, ps := range st.Partitions {
		var leader string
		for _, r := range ps.Replicas {
			if r.Role == "leader" {
				leader = r.Addr
			}
			if got := replicas[fmt.Sprintf("%d/%s", ps.Partition, r.Addr)]; got != r.Role {
				t.Errorf("partition %d replica %s: the page shows role %q, plugdb status %q", ps.Partition, r.Addr, got, r.Role)
			}
		}
		row, ok := parts[fmt.Sprintf("default/%d", ps.Partition)]
		switch {
		case !ok:
			t.Errorf("partition %d: not on the page", ps.Partition)
		case leader == "" || row["data-leader"] != leader || !strings.Contains(row["text"], "leader "+leader):
			t.Errorf("partition %d: the page shows leader %q (%q), plugdb status %q", ps.Partition, row["data-leader"], row["text"], leader)
		case row["data-epoch"] != strconv.FormatUint(ps.Epoch, 10) || !strings.Contains(row["text"], fmt.Sprintf("epoch %d", ps.Epoch)):
			t.Errorf("partition %d: the page shows epoch %q (%q), plugdb status %d", ps.Partition, row["data-epoch"], row["text"], ps.Epoch)
		}
	}
	if got := textOf(d.byID("cluster")); !strings.Contains(got, st.Cluster) {
		t.Errorf("cluster name shown %q, want %q", got, st.Cluster)
	}
}

// wantPluginsShown checks the page's plugins against st's, and the
// partitioner's pin.
func wantPluginsShown(t *testing.T, d pageDOM, st statusJSON, pin string) {
	t.Helper()
	shown := map[string]map[string]string{}
	for _, r := range d.rows("plugin") {
		shown[r["data-kind"]] = r
	}
	for kind, p := range map[string]pluginJSON{"engine": st.Engine, "partitioner": st.Partitioner, "replicator": st.Replicator} {
		r, ok := shown[kind]
		if !ok || r["data-plugin"] != p.Plugin || r["data-mode"] != p.Mode {
			t.Errorf("%s: the page shows %v, plugdb status %+v", kind, r, p)
			continue
		}
		if !strings.Contains(r["text"], "v1") {
			t.Errorf("%s: no protocol version shown: %q", kind, r["text"])
		}
		wantPin := kind == "partitioner"
		if strings.Contains(r["text"], pin) != wantPin || strings.Contains(r["text"], "not pinned") == wantPin {
			t.Errorf("%s: pinned %v, the page shows %q", kind, wantPin, r["text"])
		}
	}
	if len(shown) != 3 {
		t.Errorf("the page shows plugins %v, want engine, partitioner and replicator", shown)
	}
}
