package headless

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// budgetFlag lets a page run for budget of virtual time (its timers and
// fetches: Chromium waits for pending fetches) before Chromium dumps or
// shoots it.
func budgetFlag(budget time.Duration) string {
	return fmt.Sprintf("--virtual-time-budget=%d", budget.Milliseconds())
}

// DumpURL loads url (a page served over HTTP, such as the router's status
// page), lets it run for budget of virtual time, and returns its DOM
// serialized as HTML.
func (b Browser) DumpURL(ctx context.Context, url string, budget time.Duration) (string, error) {
	out, err := b.load(ctx, url, budgetFlag(budget), "--dump-dom")
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// ScreenshotURL loads url in a width×height window, lets it run for budget
// of virtual time, and writes what it shows to png.
func (b Browser) ScreenshotURL(ctx context.Context, url, png string, width, height int, budget time.Duration) error {
	abs, err := filepath.Abs(png)
	if err != nil {
		return err
	}
	if _, err := b.load(ctx, url, budgetFlag(budget), "--screenshot="+abs, fmt.Sprintf("--window-size=%d,%d", width, height), "--hide-scrollbars"); err != nil {
		return err
	}
	if fi, err := os.Stat(abs); err != nil || fi.Size() == 0 {
		return fmt.Errorf("chromium wrote no screenshot of %s to %s", url, abs)
	}
	return nil
}
