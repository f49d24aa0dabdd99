package headless

import (
	"context"
	"image/color"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A page served over HTTP that fetches data after a timer: DumpURL waits
// for it within the virtual time budget, ScreenshotURL shows it.
func TestURL(t *testing.T) {
	b, err := Find()
	if err != nil {
		t.Fatalf("%v (make test-deps installs Debian's chromium)", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = w.Write([]byte(`<!DOCTYPE html><html><body style="margin:0;background:#fff"><p id="got">waiting</p>` +
			`<script>setTimeout(async () => { const r = await fetch("/data"); document.getElementById("got").textContent = await r.text();` +
			` document.body.insertAdjacentHTML("beforeend", '<div style="width:100px;height:100px;background:#e15759"></div>'); }, 1000)</script></body></html>`))
	})
	mux.HandleFunc("/data", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("fetched")) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dom, err := b.DumpURL(ctx, srv.URL+"/", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dom, `<p id="got">fetched</p>`) {
		t.Errorf("DOM lacks what the page fetched:\n%s", dom)
	}
	shot := filepath.Join(t.TempDir(), "u.png")
	if err := b.ScreenshotURL(ctx, srv.URL+"/", shot, 400, 300, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	_, counts, err := Ink(shot, color.RGBA{0xe1, 0x57, 0x59, 0xff})
	if err != nil {
		t.Fatal(err)
	}
	if counts[0] < 9000 || counts[0] > 11000 {
		t.Errorf("box colour %d pixels, want about 10000 (the box the page drew after its fetch)", counts[0])
	}
}
