package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/spf13/cobra"
)

// The doc test: every command shown in README.md and docs/*.md is checked
// against the real CLI, the README's first minute is run for real against
// `plugdb dev`, and every relative link and anchor resolves. See
// docs/testing.md, "The doc test".

// docCoveredElsewhere names, for each command shown in the docs that TestDoc
// does not run (it needs ZooKeeper, takes minutes, or shows a cluster), the
// end-to-end test that runs it. TestDoc checks every such command's path and
// flags, and that the test named here exists. A command the docs show that is
// neither run by TestDoc nor listed here fails TestDoc/commands.
var docCoveredElsewhere = map[string]string{
	"make run":                "TestDoc",             // its banner is compared with `plugdb dev`'s in TestDoc/first-minute
	"make test":               "TestDoc",             // runs every test, this one included
	"make test-long":          "TestLongTestsListed", // runs the series longTests lists; that test checks the list matches the Makefile
	"make cluster":            "TestClusterUpDown",
	"make nemesis":            "TestNemesis",
	"plugdb dev":              "TestDevSwapEngines", // the engine swap refused on a used data folder
	"plugdb cluster up":       "TestClusterUpDown",
	"plugdb cluster down":     "TestClusterUpDown",
	"plugdb cluster reshard":  "TestClusterReshard",
	"plugdb node":             "TestClusterLeaderKilledFollowerTakesOverAndOldLeaderRejoins",
	"plugdb put":              "TestClusterRoutesReadsAndWrites",
	"plugdb get":              "TestClusterRoutesReadsAndWrites", // get --node, --consistency stale
	"plugdb status":           "TestClusterRoutesReadsAndWrites",
	"plugdb plugin check":     "TestPluginCheckPasses",
	"plugdb bench":            "TestBenchTwoConfigs",
	"plugdb demo":             "TestDemoKeepsRowsAcrossRuns",
	"go build":                "TestMain", // builds ./cmd/plugdb and ./examples/customengine
	"go test":                 "TestDoc",  // the pattern must name a test of the package
	"curl":                    "TestDevEndToEnd",
	"plugdb plugin serve":     "TestPluginServeByHandExits",
	"plugdb router":           "TestClusterRoutesReadsAndWrites",
	"plugdb scan":             "TestCLIScan",
	"plugdb create":           "TestCLIVerbs",
	"plugdb update":           "TestCLIVerbs",
	"plugdb delete":           "TestCLIVerbs",
	"scripts/compare.sh":      "TestCompareConfigsLoad",
	"scripts/bench-ratios.sh": "TestDoc", // exists; runs Go benchmarks only
}

// docFile is one markdown file, its path relative to the module root.
type docFile struct {
	rel, text string
}

func readDocs(t *testing.T) (root string, files []docFile) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	paths, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	paths = append([]string{filepath.Join(root, "README.md")}, paths...)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		files = append(files, docFile{rel: filepath.ToSlash(rel), text: string(b)})
	}
	return root, files
}

// codeBlock is a fenced code block with its language and the heading above it.
type codeBlock struct {
	file, heading, lang string
	line                int // of the opening fence
	lines               []string
}

func (b codeBlock) where() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

var fenceRE = regexp.MustCompile("^(```+|~~~+)\\s*([A-Za-z0-9_-]*)")

// codeBlocks returns f's fenced code blocks, and its text with them blanked out.
func codeBlocks(f docFile) (blocks []codeBlock, prose string) {
	var cur *codeBlock
	var fence, heading string
	var out strings.Builder
	for i, line := range strings.Split(f.text, "\n") {
		if cur != nil {
			if strings.HasPrefix(strings.TrimSpace(line), fence) {
				blocks = append(blocks, *cur)
				cur = nil
			} else {
				cur.lines = append(cur.lines, line)
			}
			out.WriteString("\n")
			continue
		}
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			fence = m[1]
			cur = &codeBlock{file: f.rel, heading: heading, lang: m[2], line: i + 1}
			out.WriteString("\n")
			continue
		}
		if strings.HasPrefix(line, "#") {
			heading = strings.TrimSpace(strings.TrimLeft(line, "#"))
		}
		out.WriteString(line + "\n")
	}
	return blocks, out.String()
}

// docCommand is one command line of a code block and, in a console block, the
// output shown after it.
type docCommand struct {
	block codeBlock
	line  string
	want  []string
}

// commands returns the command lines of a shell or console block: in a console
// block the lines after "$ ", each followed by its output; in a sh block every
// line. A trailing backslash continues a line.
func commands(b codeBlock) []docCommand {
	var cmds []docCommand
	console := b.lang == "console"
	for i := 0; i < len(b.lines); i++ {
		line := b.lines[i]
		if console {
			if !strings.HasPrefix(line, "$ ") {
				if len(cmds) > 0 {
					cmds[len(cmds)-1].want = append(cmds[len(cmds)-1].want, line)
				}
				continue
			}
			line = strings.TrimPrefix(line, "$ ")
		}
		for strings.HasSuffix(line, "\\") && i+1 < len(b.lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + " " + strings.TrimSpace(b.lines[i])
		}
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		cmds = append(cmds, docCommand{block: b, line: line})
	}
	return cmds
}

// shellSegments splits a command line into simple commands (at |, ||, &, &&
// and ;), each a list of words with quotes removed; a # starting a word begins a
// comment, $(…) stays inside its word, and redirections are dropped. Keywords
// that begin a loop's body (do, then) are dropped too.
func shellSegments(line string) ([][]string, error) {
	var segs [][]string
	var words []string
	var word strings.Builder
	inWord := false
	endWord := func() {
		if inWord {
			words = append(words, word.String())
		}
		word.Reset()
		inWord = false
	}
	endSeg := func() {
		endWord()
		for len(words) > 0 && (words[0] == "do" || words[0] == "then" || words[0] == "time") {
			words = words[1:]
		}
		if len(words) > 0 {
			segs = append(segs, words)
		}
		words = nil
	}
	r := []rune(line)
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c == '\'':
			j := slices.Index(r[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ' in %q", line)
			}
			word.WriteString(string(r[i+1 : i+1+j]))
			inWord = true
			i += j + 1
		case c == '"':
			j := slices.Index(r[i+1:], '"')
			if j < 0 {
				return nil, fmt.Errorf("unterminated \" in %q", line)
			}
			word.WriteString(string(r[i+1 : i+1+j]))
			inWord = true
			i += j + 1
		case c == '\\' && i+1 < len(r):
			word.WriteRune(r[i+1])
			inWord = true
			i++
		case c == '$' && i+1 < len(r) && r[i+1] == '(':
			depth := 0
			for ; i < len(r); i++ {
				word.WriteRune(r[i])
				if r[i] == '(' {
					depth++
				} else if r[i] == ')' {
					if depth--; depth == 0 {
						break
					}
				}
			}
			inWord = true
		case c == '#' && !inWord:
			endSeg()
			return segs, nil
		case c == '|' || c == '&' || c == ';':
			endSeg()
			if i+1 < len(r) && (r[i+1] == '|' || r[i+1] == '&') {
				i++
			}
		case c == '>' || c == '<':
			// A redirection: drop it and its target (and a fd number before it).
			if inWord && strings.Trim(word.String(), "0123456789") == "" {
				word.Reset()
				inWord = false
			}
			endWord()
			for i+1 < len(r) && (r[i+1] == '>' || r[i+1] == '&' || r[i+1] == ' ') {
				i++
			}
			for i+1 < len(r) && r[i+1] != ' ' {
				i++
			}
		case unicode.IsSpace(c):
			endWord()
		default:
			word.WriteRune(c)
			inWord = true
		}
	}
	endSeg()
	return segs, nil
}

// program strips leading VAR=value assignments and returns the program and its
// arguments, the program normalized: bin/plugdb and ./bin/plugdb are plugdb.
func program(words []string) (env []string, prog string, args []string) {
	for len(words) > 0 && regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`).MatchString(words[0]) {
		env, words = append(env, words[0]), words[1:]
	}
	if len(words) == 0 {
		return env, "", nil
	}
	prog = strings.TrimPrefix(words[0], "./")
	if prog == "bin/plugdb" {
		prog = "plugdb"
	}
	return env, prog, words[1:]
}

// checkCLI finds args in a fresh plugdb command tree and parses its flags the
// way cobra will, returning the command's path ("plugdb cluster up").
func checkCLI(args []string) (string, error) {
	root := rootCommand()
	cmd, rest, err := root.Find(args)
	if err != nil {
		return "", err
	}
	if !cmd.Runnable() {
		return "", fmt.Errorf("%q is not a command that runs (its subcommands: %s)", cmd.CommandPath(), subcommandNames(cmd))
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return "", fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		return "", fmt.Errorf("%s: arguments %q: %w", cmd.CommandPath(), cmd.Flags().Args(), err)
	}
	return cmd.CommandPath(), nil
}

func subcommandNames(cmd *cobra.Command) string {
	var names []string
	for _, c := range cmd.Commands() {
		names = append(names, c.Name())
	}
	return strings.Join(names, ", ")
}

var (
	makeTargetRE = regexp.MustCompile(`(?m)^([A-Za-z0-9_.-]+):`)
	testFuncRE   = regexp.MustCompile(`(?m)^func ((?:Test|Benchmark|Example)[A-Za-z0-9_]*)\(`)
	repoPathRE   = regexp.MustCompile(`^(configs|examples|scripts|docs)/`)
)

// testFuncs returns the names of the test functions in dir's _test.go files.
func testFuncs(t *testing.T, dir string) []string {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(dir, "*_test.go"))
	var names []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range testFuncRE.FindAllStringSubmatch(string(b), -1) {
			names = append(names, m[1])
		}
	}
	return names
}

// checkGoTest checks a `go test` line: its packages exist, its -run (or
// -bench) pattern names a test of them, and a -nemesis.… flag is one this
// package's tests define.
func checkGoTest(t *testing.T, root string, args []string) error {
	var pkgs []string
	var patterns []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch {
		case strings.HasPrefix(a, "./"):
			pkgs = append(pkgs, strings.TrimSuffix(a, "/..."))
		case strings.HasPrefix(a, "-") && (name == "run" || name == "bench"):
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			patterns = append(patterns, value)
		case strings.HasPrefix(a, "-nemesis."):
			if flag.Lookup(name) == nil {
				return fmt.Errorf("no test flag -%s in ./cmd/plugdb", name)
			}
			if !hasValue {
				i++
			}
		}
	}
	var funcs []string
	for _, p := range pkgs {
		dir := filepath.Join(root, p)
		if _, err := os.Stat(dir); err != nil {
			return fmt.Errorf("package %s: %w", p, err)
		}
		funcs = append(funcs, testFuncs(t, dir)...)
	}
	for _, p := range patterns {
		if p == "^$" || p == "." || len(pkgs) == 0 {
			continue
		}
		re, err := regexp.Compile(p)
		if err != nil {
			return fmt.Errorf("pattern %q: %w", p, err)
		}
		if !slices.ContainsFunc(funcs, re.MatchString) {
			return fmt.Errorf("pattern %q matches no test of %s", p, strings.Join(pkgs, " "))
		}
	}
	return nil
}

// checkRepoPaths fails for an argument that names a file of the repository
// (configs/…, examples/…) that does not exist.
func checkRepoPaths(root string, args []string) error {
	for _, a := range args {
		if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") {
			a = v
		}
		a = strings.TrimPrefix(a, "./")
		if repoPathRE.MatchString(a) {
			if _, err := os.Stat(filepath.Join(root, a)); err != nil {
				return fmt.Errorf("%s does not exist", a)
			}
		}
	}
	return nil
}

func isFirstMinute(b codeBlock) bool {
	return b.file == "README.md" && b.heading == "First minute" && b.lang == "console"
}

func isShell(lang string) bool {
	return lang == "sh" || lang == "shell" || lang == "bash" || lang == "console"
}

func TestDoc(t *testing.T) {
	root, files := readDocs(t)
	var blocks []codeBlock
	var prose = map[string]string{}
	for _, f := range files {
		bs, p := codeBlocks(f)
		blocks = append(blocks, bs...)
		prose[f.rel] = p
	}
	t.Run("readme", func(t *testing.T) { docReadme(t, files[0], blocks) })
	t.Run("commands", func(t *testing.T) { docCommands(t, root, blocks) })
	t.Run("links", func(t *testing.T) { docLinks(t, root, files, prose) })
	t.Run("first-minute", func(t *testing.T) { docFirstMinute(t, blocks) })
}

// docReadme: the README stays a front door that starts with the two commands.
func docReadme(t *testing.T, readme docFile, blocks []codeBlock) {
	if n := strings.Count(readme.text, "\n"); n > 200 {
		t.Errorf("README.md has %d lines; keep it at 200 or fewer and move the rest to docs/", n)
	}
	if len(blocks) == 0 || blocks[0].file != "README.md" || blocks[0].line > 3 {
		t.Fatal("README.md must open with a code block holding `make run` and `make test`")
	}
	first := strings.Join(blocks[0].lines, "\n")
	if !strings.HasPrefix(first, "make run ") || !strings.Contains(first, "\nmake test ") {
		t.Errorf("README.md's first code block must be `make run` then `make test`; it is\n%s", first)
	}
}

// docCommands checks every command of every shell or console block.
func docCommands(t *testing.T, root string, blocks []codeBlock) {
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	var targets []string
	for _, m := range makeTargetRE.FindAllStringSubmatch(string(makefile), -1) {
		targets = append(targets, m[1])
	}
	tests := testFuncs(t, ".")
	for key, test := range docCoveredElsewhere {
		if !slices.Contains(tests, test) {
			t.Errorf("docCoveredElsewhere[%q] names %s, which is not a test of ./cmd/plugdb", key, test)
		}
	}
	checked := 0
	for _, b := range blocks {
		if !isShell(b.lang) {
			continue
		}
		for _, c := range commands(b) {
			segs, err := shellSegments(c.line)
			if err != nil {
				t.Errorf("%s: %v", b.where(), err)
				continue
			}
			for _, words := range segs {
				_, prog, args := program(words)
				var key string
				switch prog {
				case "plugdb":
					path, err := checkCLI(args)
					if err != nil {
						t.Errorf("%s: plugdb %s: %v", b.where(), strings.Join(args, " "), err)
						continue
					}
					key = path
				case "make":
					for _, a := range args {
						if name, value, ok := strings.Cut(a, "="); ok {
							if name == "NEMESIS_FLAGS" {
								if err := checkGoTest(t, root, strings.Fields(value)); err != nil {
									t.Errorf("%s: %s: %v", b.where(), a, err)
								}
							}
							continue
						}
						if !slices.Contains(targets, a) {
							t.Errorf("%s: make %s: no such target in the Makefile", b.where(), a)
						}
						key = "make " + a
					}
				case "go":
					if len(args) == 0 {
						continue
					}
					key = "go " + args[0]
					if args[0] == "test" {
						if err := checkGoTest(t, root, args[1:]); err != nil {
							t.Errorf("%s: %s: %v", b.where(), c.line, err)
						}
					}
				case "curl", "scripts/compare.sh", "scripts/bench-ratios.sh":
					key = prog
					if strings.HasPrefix(prog, "scripts/") {
						if _, err := os.Stat(filepath.Join(root, prog)); err != nil {
							t.Errorf("%s: %s does not exist", b.where(), prog)
						}
					}
				default:
					continue // kill, tail, for …: not plugdb's
				}
				if err := checkRepoPaths(root, args); err != nil {
					t.Errorf("%s: %s: %v", b.where(), c.line, err)
				}
				checked++
				if isFirstMinute(b) && (prog == "plugdb" || prog == "curl") {
					continue // run by TestDoc/first-minute
				}
				if _, ok := docCoveredElsewhere[key]; !ok {
					t.Errorf("%s: %q: TestDoc does not run it and docCoveredElsewhere names no test that does", b.where(), key)
				}
			}
		}
	}
	t.Logf("%d commands checked", checked)
	if checked == 0 {
		t.Error("no command found in the docs")
	}
}

var (
	linkRE       = regexp.MustCompile(`!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)`)
	inlineCodeRE = regexp.MustCompile("`[^`\n]*`")
)

// anchors returns the GitHub anchors of a markdown file's headings.
func anchors(text string) map[string]bool {
	_, prose := codeBlocks(docFile{text: text})
	seen := map[string]int{}
	out := map[string]bool{}
	for _, line := range strings.Split(prose, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// docLinks checks that every relative link resolves, and its #anchor too.
func docLinks(t *testing.T, root string, files []docFile, prose map[string]string) {
	texts := map[string]string{}
	for _, f := range files {
		texts[f.rel] = f.text
	}
	n := 0
	for _, f := range files {
		text := inlineCodeRE.ReplaceAllString(prose[f.rel], "")
		for _, m := range linkRE.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			n++
			path, anchor, _ := strings.Cut(target, "#")
			rel := f.rel
			if path != "" {
				rel = filepath.ToSlash(filepath.Clean(filepath.Join(filepath.Dir(f.rel), path)))
			}
			if _, err := os.Stat(filepath.Join(root, rel)); err != nil {
				t.Errorf("%s: link %s: %s does not exist", f.rel, target, rel)
				continue
			}
			if anchor == "" {
				continue
			}
			text, ok := texts[rel]
			if !ok {
				b, err := os.ReadFile(filepath.Join(root, rel))
				if err != nil || !strings.HasSuffix(rel, ".md") {
					t.Errorf("%s: link %s: an anchor into %s, which is not markdown", f.rel, target, rel)
					continue
				}
				text = string(b)
			}
			if !anchors(text)[anchor] {
				t.Errorf("%s: link %s: %s has no heading with anchor #%s", f.rel, target, rel, anchor)
			}
		}
	}
	t.Logf("%d relative links checked", n)
}

// docFirstMinute starts `plugdb dev` on free ports and runs the README's first
// minute against it, comparing each output with the one shown. The README's
// addresses are the defaults; the test's are free ports, swapped in both ways.
func docFirstMinute(t *testing.T, blocks []codeBlock) {
	var cmds []docCommand
	for _, b := range blocks {
		if isFirstMinute(b) {
			cmds = append(cmds, commands(b)...)
		}
	}
	if len(cmds) < 3 {
		t.Fatalf("README.md's \"First minute\" shows %d commands; TestDoc expects the `make run` block and the client session", len(cmds))
	}
	data := filepath.Join(t.TempDir(), "data")
	d := startDev(t, data, nil)
	swap := strings.NewReplacer("127.0.0.1:7070", d.grpcAddr, "127.0.0.1:8080", d.http, "./plugdb-data", data)
	ran := 0
	for _, c := range cmds {
		segs, err := shellSegments(c.line)
		if err != nil || len(segs) != 1 {
			t.Fatalf("%s: %q: want one simple command (%v)", c.block.where(), c.line, err)
		}
		_, prog, args := program(segs[0])
		var got string
		switch prog {
		case "make":
			if !slices.Equal(args, []string{"run"}) {
				t.Fatalf("%s: only `make run` may start the first minute, not %q", c.block.where(), c.line)
			}
			got = d.stdout.String()
		case "plugdb":
			if !slices.Contains(args, "--addr") {
				args = append(args, "--addr", d.grpcAddr)
			}
			res := runPlugdb(t, 30*time.Second, args...)
			if res.code != 0 {
				t.Errorf("%s: %s\n%s", c.block.where(), c.line, res)
				continue
			}
			got = res.stdout
		case "curl":
			got = docCurl(t, swap, args)
		default:
			t.Fatalf("%s: %q: TestDoc runs only plugdb, curl and `make run` here", c.block.where(), c.line)
		}
		ran++
		want := strings.Split(swap.Replace(strings.Join(c.want, "\n")), "\n")
		if diff := docOutputDiff(want, got); diff != "" {
			t.Errorf("%s: %s: the output differs from the README's: %s\n--- README:\n%s\n--- got:\n%s", c.block.where(), c.line, diff, strings.Join(want, "\n"), got)
		}
	}
	t.Logf("ran %d commands of the first minute", ran)
	d.stop(t, 2)
}

// docCurl does what `curl -s [-X METHOD] [-d BODY] URL` does and returns the
// response body; the URL's default address is swapped for the test's.
func docCurl(t *testing.T, swap *strings.Replacer, args []string) string {
	t.Helper()
	method, body, url := "GET", "", ""
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-s":
		case "-X":
			i++
			method = args[i]
		case "-d":
			i++
			body = args[i]
		default:
			if strings.HasPrefix(args[i], "-") || url != "" {
				t.Fatalf("curl %s: TestDoc knows -s, -X, -d and one URL", strings.Join(args, " "))
			}
			url = swap.Replace(args[i])
		}
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("curl %s: %v", strings.Join(args, " "), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode/100 != 2 {
		t.Errorf("curl %s: HTTP %s: %s", strings.Join(args, " "), resp.Status, b)
	}
	return string(b)
}

// docOutputDiff compares output line by line: two lines match when they hold
// the same JSON value, or the same words (tabwriter's padding depends on the
// addresses' widths). Empty lines at the ends do not count.
func docOutputDiff(want []string, got string) string {
	trim := func(lines []string) []string {
		for len(lines) > 0 && strings.TrimSpace(lines[0]) == "" {
			lines = lines[1:]
		}
		for len(lines) > 0 && strings.TrimSpace(lines[len(lines)-1]) == "" {
			lines = lines[:len(lines)-1]
		}
		return lines
	}
	var gotLines []string
	sc := bufio.NewScanner(strings.NewReader(got))
	for sc.Scan() {
		gotLines = append(gotLines, sc.Text())
	}
	w, g := trim(want), trim(gotLines)
	if len(w) != len(g) {
		return fmt.Sprintf("%d lines shown, %d printed", len(w), len(g))
	}
	for i := range w {
		var wj, gj any
		if json.Unmarshal([]byte(w[i]), &wj) == nil && json.Unmarshal([]byte(g[i]), &gj) == nil {
			if !reflect.DeepEqual(wj, gj) {
				return fmt.Sprintf("line %d: JSON %s, printed %s", i+1, w[i], g[i])
			}
			continue
		}
		if !slices.Equal(strings.Fields(w[i]), strings.Fields(g[i])) {
			return fmt.Sprintf("line %d: %q, printed %q", i+1, w[i], g[i])
		}
	}
	return ""
}

// TestDocParsing checks the doc test's own parsing on lines like the docs'.
func TestDocParsing(t *testing.T) {
	for _, tc := range []struct {
		line string
		want [][]string
	}{
		{`bin/plugdb put user:1 ada`, [][]string{{"bin/plugdb", "put", "user:1", "ada"}}},
		{`curl -s -X PUT -d '{"value":"grace"}' http://h/v1/kv/user:2`, [][]string{{"curl", "-s", "-X", "PUT", "-d", `{"value":"grace"}`, "http://h/v1/kv/user:2"}}},
		{`bin/plugdb cluster up --dir /tmp/pc &   # waits`, [][]string{{"bin/plugdb", "cluster", "up", "--dir", "/tmp/pc"}}},
		{`for i in $(seq 60); do bin/plugdb put k$i v$i; done   # all 60`, [][]string{{"for", "i", "in", "$(seq 60)"}, {"bin/plugdb", "put", "k$i", "v$i"}, {"done"}}},
		{`bin/plugdb status | tail -2`, [][]string{{"bin/plugdb", "status"}, {"tail", "-2"}}},
		{`PLUGDB_ENGINE_PLUGIN=memory bin/plugdb dev 2>/dev/null`, [][]string{{"PLUGDB_ENGINE_PLUGIN=memory", "bin/plugdb", "dev"}}},
		{`go test ./x -run 'TestA$' && echo ok`, [][]string{{"go", "test", "./x", "-run", "TestA$"}, {"echo", "ok"}}},
	} {
		got, err := shellSegments(tc.line)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("shellSegments(%q) = %q, %v; want %q", tc.line, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		args []string
		path string // "" for an error
	}{
		{[]string{"get", "--node", "127.0.0.1:7105", "--consistency", "stale", "user:1"}, "plugdb get"},
		{[]string{"cluster", "up", "--dir", "/tmp/pc", "--zookeepers", "3"}, "plugdb cluster up"},
		{[]string{"status", "-o", "json"}, "plugdb status"},
		{[]string{"--log-level", "debug", "dev", "--grpc", "127.0.0.1:1"}, "plugdb dev"},
		{[]string{"cluster"}, ""},                   // a group, not a command
		{[]string{"clustr", "up"}, ""},              // no such command
		{[]string{"get", "--nodes", "x", "k"}, ""},  // no such flag
		{[]string{"get", "a", "b"}, ""},             // one argument too many
		{[]string{"node", "--partition", "x"}, ""},  // not an int
		{[]string{"status", "--timeout"}, ""},       // a flag without its value
		{[]string{"plugin", "serve", "engine"}, ""}, // one argument short
	} {
		path, err := checkCLI(tc.args)
		if path != tc.path || (err != nil) != (tc.path == "") {
			t.Errorf("checkCLI(%q) = %q, %v; want %q", tc.args, path, err, tc.path)
		}
	}
	if d := docOutputDiff([]string{`{"a": 1, "b": "x"}`, "0  leader  127.0.0.1:7070"}, "{\"b\":\"x\",\"a\":1}\n0 leader 127.0.0.1:7070\n"); d != "" {
		t.Errorf("docOutputDiff: %s", d)
	}
	if d := docOutputDiff([]string{"ada"}, "ada\ngrace\n"); d == "" {
		t.Error("docOutputDiff: an extra line went unnoticed")
	}
	a := anchors("# Title\n## Comparing strategies: `plugdb bench`\n```sh\n# not a heading\n```\n## Errors, goroutines and waits\n## Title\n")
	for _, want := range []string{"title", "comparing-strategies-plugdb-bench", "errors-goroutines-and-waits", "title-1"} {
		if !a[want] {
			t.Errorf("anchors: no #%s in %v", want, a)
		}
	}
	if a["not-a-heading"] {
		t.Error("anchors: a comment in a code block counted as a heading")
	}
}
