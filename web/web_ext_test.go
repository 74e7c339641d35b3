package web_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/vmre/vmre/web"
)

// The embedded bundle is complete: the page and the two assets it loads,
// with nothing fetched from anywhere else.
func TestDistIsComplete(t *testing.T) {
	t.Parallel()
	dist := web.Dist()
	page, err := fs.ReadFile(dist, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{`src="app.js"`, `href="app.css"`} {
		if !strings.Contains(string(page), ref) {
			t.Errorf("index.html does not load %s", ref)
		}
	}
	for _, name := range []string{"app.js", "app.css"} {
		b, err := fs.ReadFile(dist, name)
		if err != nil || len(b) < 1000 {
			t.Errorf("%s: %d bytes, %v (run npm run build in web/)", name, len(b), err)
		}
	}
	if strings.Contains(string(page), "http://") || strings.Contains(string(page), "https://") {
		t.Error("index.html refers to another origin")
	}
}
