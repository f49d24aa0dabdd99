// Package headless renders local HTML files in headless Chromium (Debian's
// chromium package), for tests that check a page really renders: the DOM
// after the page loaded, and a screenshot.
package headless

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Browser is a Chromium binary.
type Browser struct {
	Path string
}

// candidates are the names Chromium has on PATH, in the order Find tries them.
var candidates = []string{"chromium", "chromium-browser", "google-chrome"}

// Find returns the Chromium named by $PLUGDB_CHROMIUM, or the first of
// chromium, chromium-browser and google-chrome on PATH.
func Find() (Browser, error) {
	if p := os.Getenv("PLUGDB_CHROMIUM"); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return Browser{}, fmt.Errorf("PLUGDB_CHROMIUM=%s: %w", p, err)
		}
		return Browser{Path: p}, nil
	}
	for _, name := range candidates {
		if p, err := exec.LookPath(name); err == nil {
			return Browser{Path: p}, nil
		}
	}
	return Browser{}, fmt.Errorf("no Chromium on PATH (looked for %v; on Debian: apt-get install chromium, or set PLUGDB_CHROMIUM)", candidates)
}

// DumpDOM loads the HTML file at path and returns the DOM Chromium built from
// it, serialized as HTML.
func (b Browser) DumpDOM(ctx context.Context, path string) (string, error) {
	out, err := b.run(ctx, path, "--dump-dom")
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// Screenshot loads the HTML file at path in a width×height window and writes
// what it shows to png.
func (b Browser) Screenshot(ctx context.Context, path, png string, width, height int) error {
	abs, err := filepath.Abs(png)
	if err != nil {
		return err
	}
	if _, err := b.run(ctx, path, "--screenshot="+abs, fmt.Sprintf("--window-size=%d,%d", width, height), "--hide-scrollbars"); err != nil {
		return err
	}
	if fi, err := os.Stat(abs); err != nil || fi.Size() == 0 {
		return fmt.Errorf("chromium wrote no screenshot to %s", abs)
	}
	return nil
}

// run starts Chromium headless on the file at path with a profile of its
// own, with its background networking off (it loads only the local file).
func (b Browser) run(ctx context.Context, path string, args ...string) ([]byte, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("render %s: %w", path, err)
	}
	return b.load(ctx, "file://"+abs, args...)
}

// load starts Chromium headless on target (a URL) with a profile of its
// own and args, in a process group of its own that is killed when it ends
// or ctx does, so no helper process outlives it.
func (b Browser) load(ctx context.Context, target string, args ...string) ([]byte, error) {
	profile, err := os.MkdirTemp("", "plugdb-chromium-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	argv := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile,
	}, args...)
	argv = append(argv, target)
	cmd := exec.CommandContext(ctx, b.Path, argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // helpers left behind, if any
	}
	if err != nil {
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return nil, fmt.Errorf("chromium on %s: %w; its output ends with: %s", target, err, tail(stderr.Bytes(), 2000))
	}
	return stdout.Bytes(), nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
