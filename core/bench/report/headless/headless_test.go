package headless

import (
	"context"
	"image/color"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestRenderAndPicture(t *testing.T) {
	b, err := Find()
	if err != nil {
		t.Fatalf("%v (make test-deps installs Debian's chromium)", err)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "p.html")
	const doc = `<!DOCTYPE html><html><body style="margin:0;background:#fff">` +
		`<div id="box" style="width:200px;height:100px;background:#e15759"></div>` +
		`<p id="made"></p></body></html>`
	if err := os.WriteFile(page, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dom, err := b.DumpDOM(ctx, page)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dom, `id="box"`) {
		t.Errorf("DOM lacks the box:\n%s", dom)
	}
	shot := filepath.Join(dir, "p.png")
	if err := b.Screenshot(ctx, page, shot, 400, 300); err != nil {
		t.Fatal(err)
	}
	inked, counts, err := Ink(shot, color.RGBA{0xe1, 0x57, 0x59, 0xff}, color.RGBA{0x4e, 0x79, 0xa7, 0xff})
	if err != nil {
		t.Fatal(err)
	}
	// The box is 200×100 of 400×300 pixels; nothing is blue.
	if counts[0] < 19000 || counts[0] > 21000 || counts[1] != 0 {
		t.Errorf("box colour %d pixels, blue %d: want about 20000 and 0", counts[0], counts[1])
	}
	if inked < 0.15 || inked > 0.2 {
		t.Errorf("inked share %.3f, want about 1/6", inked)
	}
}

func TestMissingFile(t *testing.T) {
	b, err := Find()
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.DumpDOM(context.Background(), filepath.Join(t.TempDir(), "nope.html"))
	if err == nil || !strings.Contains(err.Error(), "nope.html") {
		t.Errorf("DumpDOM of a missing file: %v, want an error naming it", err)
	}
}

func TestFindHonoursEnv(t *testing.T) {
	t.Setenv("PLUGDB_CHROMIUM", "/no/such/chromium")
	if _, err := Find(); err == nil || !strings.Contains(err.Error(), "PLUGDB_CHROMIUM=/no/such/chromium") {
		t.Errorf("Find with a bad PLUGDB_CHROMIUM: %v", err)
	}
}
