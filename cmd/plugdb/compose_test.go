package main

import (
	"fmt"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/plugdb/plugdb/core/config"
)

// There is no Docker engine where the tests run, so the Docker files are
// checked by reading them: deploy/compose.yaml against plugdb's real command
// tree, flags and config keys (as the container would load its config), and
// the Dockerfile for the stages and paths the compose file relies on.

// composeFile is what the test reads of a compose file.
type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image    string `yaml:"image"`
	Hostname string `yaml:"hostname"`
	Build    *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	DependsOn   []string          `yaml:"depends_on"`
	Volumes     []string          `yaml:"volumes"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

// imageConfigDir is where the Dockerfile copies configs/.
const imageConfigDir = "/etc/plugdb/"

func TestComposeFile(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("deploy/compose.yaml: %v", err)
	}
	zoos := composeZooKeepers(t, f)
	l, err := newLoader(hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	known := clusterKnown(l)

	routers := 0
	replicas := map[int][]string{} // partition → node services
	var cfg config.Config
	for name, s := range f.Services {
		if s.Build == nil {
			continue // not built from plugdb's Dockerfile
		}
		if _, err := os.Stat(filepath.Join(root, "deploy", s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: build %s/%s: %v", name, s.Build.Context, s.Build.Dockerfile, err)
		}
		cmd, err := composeCLI(s.Command)
		if err != nil {
			t.Errorf("%s: command %q: %v", name, s.Command, err)
			continue
		}
		cfg = composeConfig(t, root, name, cmd, s, known)
		for _, z := range zoos {
			if !slices.Contains(cfg.ZooKeeper.Servers, z+":2181") {
				t.Errorf("%s: zookeeper.servers %v lacks %s:2181", name, cfg.ZooKeeper.Servers, z)
			}
			if !slices.Contains(s.DependsOn, z) {
				t.Errorf("%s: depends_on %v lacks %s", name, s.DependsOn, z)
			}
		}
		for _, v := range s.Volumes {
			if vol, _, ok := strings.Cut(v, ":"); ok && !strings.HasPrefix(vol, ".") && !strings.HasPrefix(vol, "/") {
				if _, ok := f.Volumes[vol]; !ok {
					t.Errorf("%s: volume %s is not declared under volumes", name, vol)
				}
			}
		}
		switch cmd.CommandPath() {
		case "plugdb router":
			routers++
			composeRouter(t, name, s, cfg)
		case "plugdb node":
			p, _ := cmd.Flags().GetInt("partition")
			replicas[p] = append(replicas[p], name)
			composeNode(t, name, cmd, s)
		default:
			t.Errorf("%s: runs %s; want plugdb router or plugdb node", name, cmd.CommandPath())
		}
	}
	if routers != 1 {
		t.Errorf("%d router services; want 1", routers)
	}
	if len(replicas) != cfg.Partitions {
		t.Errorf("nodes of partitions %v; want every partition of %d", replicas, cfg.Partitions)
	}
	for p := range cfg.Partitions {
		if len(replicas[p]) != cfg.Nodes.Replicas {
			t.Errorf("partition %d: nodes %v; want nodes.replicas = %d", p, replicas[p], cfg.Nodes.Replicas)
		}
	}
	checkDockerfile(t, root)
}

// composeZooKeepers checks the services of the official zookeeper image
// form one ensemble and returns their names.
func composeZooKeepers(t *testing.T, f composeFile) []string {
	t.Helper()
	var zoos []string
	for name, s := range f.Services {
		if image, _, _ := strings.Cut(s.Image, ":"); image == "zookeeper" || image == "library/zookeeper" {
			zoos = append(zoos, name)
		}
	}
	slices.Sort(zoos)
	if len(zoos) != 1 && len(zoos) != 3 {
		t.Fatalf("zookeeper services %v; want 1 or 3", zoos)
	}
	ids := map[string]bool{}
	for _, z := range zoos {
		env := f.Services[z].Environment
		id := env["ZOO_MY_ID"]
		if ids[id] {
			t.Errorf("%s: ZOO_MY_ID %q used twice", z, id)
		}
		ids[id] = true
		if len(zoos) == 1 {
			continue
		}
		for _, o := range zoos {
			want := fmt.Sprintf("server.%s=%s:2888:3888;2181", f.Services[o].Environment["ZOO_MY_ID"], o)
			if !slices.Contains(strings.Fields(env["ZOO_SERVERS"]), want) {
				t.Errorf("%s: ZOO_SERVERS %q lacks %q", z, env["ZOO_SERVERS"], want)
			}
		}
	}
	return zoos
}

// composeCLI finds a service's command in a fresh plugdb command tree and
// parses its flags as cobra will.
func composeCLI(args []string) (*cobra.Command, error) {
	if _, err := checkCLI(args); err != nil {
		return nil, err
	}
	cmd, rest, err := rootCommand().Find(args)
	if err != nil {
		return nil, err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return nil, err
	}
	if err := cmd.ValidateRequiredFlags(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// composeConfig loads the config a service's process would: the image's
// copy of configs/ named by --config, overlaid by the service's PLUGDB_…
// variables, checked as the process checks it.
func composeConfig(t *testing.T, root, name string, cmd *cobra.Command, s composeService, known config.Known) config.Config {
	t.Helper()
	file, _ := cmd.Flags().GetString("config")
	rel, ok := strings.CutPrefix(file, imageConfigDir)
	if !ok {
		t.Errorf("%s: --config %q is not in the image's %s (the repository's configs/)", name, file, imageConfigDir)
	}
	var env []string
	for k, v := range s.Environment {
		if !strings.HasPrefix(k, config.EnvPrefix) {
			t.Errorf("%s: environment %s is not a plugdb variable (%s…)", name, k, config.EnvPrefix)
		}
		env = append(env, k+"="+v)
	}
	cfg, err := config.Load(config.Source{File: filepath.Join(root, "configs", rel), Env: env})
	if err == nil {
		err = cfg.Validate(known)
	}
	if err != nil {
		t.Fatalf("%s: the config it loads: %v", name, err)
	}
	return cfg
}

// composeRouter checks the router binds every interface of its container
// and publishes the ports it binds, and that its health check is a plugdb
// command.
func composeRouter(t *testing.T, name string, s composeService, cfg config.Config) {
	t.Helper()
	for key, addr := range map[string]string{"router.grpc": cfg.Router.GRPC, "router.http": cfg.Router.HTTP} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || !unspecifiedHost(host) {
			t.Errorf("%s: %s %q: want 0.0.0.0:PORT, reachable from other containers and the published port", name, key, addr)
			continue
		}
		if !slices.Contains(s.Ports, port+":"+port) {
			t.Errorf("%s: %s binds port %s, which ports %v do not publish", name, key, port, s.Ports)
		}
	}
	if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" || path.Base(s.Healthcheck.Test[1]) != "plugdb" {
		t.Errorf("%s: healthcheck %+v; want [CMD, /usr/local/bin/plugdb, status, …]", name, s.Healthcheck)
	} else if _, err := checkCLI(s.Healthcheck.Test[2:]); err != nil {
		t.Errorf("%s: healthcheck %q: %v", name, s.Healthcheck.Test, err)
	}
}

// composeNode checks a node binds every interface of its container and
// advertises its service name, which the other containers resolve, and
// keeps its data in a volume.
func composeNode(t *testing.T, name string, cmd *cobra.Command, s composeService) {
	t.Helper()
	get := func(flag string) string { v, _ := cmd.Flags().GetString(flag); return v }
	addr, adv := get("addr"), get("advertise")
	published, err := nodeAdvertise(addr, adv)
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	host, port, _ := net.SplitHostPort(addr)
	advHost, advPort, _ := net.SplitHostPort(published)
	if !unspecifiedHost(host) || advHost != name || advPort != port {
		t.Errorf("%s: --addr %s --advertise %s; want 0.0.0.0:PORT advertised as %s:PORT", name, addr, adv, name)
	}
	if ra := get("repl-advertise"); ra != "" {
		if h, _, _ := net.SplitHostPort(ra); h != name {
			t.Errorf("%s: --repl-advertise %s; want the service name %s", name, ra, name)
		}
	}
	data := get("data")
	mounted := slices.ContainsFunc(s.Volumes, func(v string) bool {
		parts := strings.Split(v, ":")
		return len(parts) >= 2 && parts[1] == data
	})
	if !mounted {
		t.Errorf("%s: --data %s is not a volume (%v): its data would go with the container", name, data, s.Volumes)
	}
	if _, err := strconv.Atoi(port); err != nil {
		t.Errorf("%s: --addr %s: no port", name, addr)
	}
}

// checkDockerfile checks the Dockerfile has what the compose file relies
// on: a Go build stage making a static binary, a small final stage with the
// binary where the health check runs it and configs/ where --config names
// it.
func checkDockerfile(t *testing.T, root string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "FROM" {
			froms = append(froms, strings.Join(f[1:], " "))
		}
	}
	text := string(b)
	for _, want := range []string{"CGO_ENABLED=0", "COPY --from=build /out/plugdb /usr/local/bin/plugdb",
		"COPY configs/ " + imageConfigDir, `ENTRYPOINT ["/usr/local/bin/plugdb"]`, "USER nonroot"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if len(froms) != 2 || !strings.HasPrefix(froms[0], "golang:") || !strings.HasSuffix(froms[0], " AS build") ||
		!strings.HasPrefix(froms[1], "gcr.io/distroless/static") {
		t.Errorf("Dockerfile stages %q; want golang:… AS build, then gcr.io/distroless/static…", froms)
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(ignore), "\n") {
		line = strings.Trim(strings.TrimSpace(line), "/")
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "configs", "core", "engines", "plugins", "proto"} {
			if line == needed {
				t.Errorf(".dockerignore leaves out %s, which the build needs", needed)
			}
		}
	}
}
