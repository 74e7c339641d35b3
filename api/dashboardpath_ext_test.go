package api_test

import (
	"net/http"
	"testing"

	"github.com/vmre/vmre/api"
)

// TestDashboardBadPath: a path that names no file an fs.FS can hold (an
// invalid UTF-8 byte) is the client's error, 400, not a server error.
func TestDashboardBadPath(t *testing.T) {
	t.Parallel()
	// The embedded dashboard: it refuses such a name with an error that
	// net/http's file server answers 500.
	h := start(t, func(c *api.Config) { c.Dashboard = nil })
	tests := []struct {
		name string
		path string
		want int
	}{
		{"invalid utf-8", "/%ff", http.StatusBadRequest},
		{"invalid utf-8 below a directory", "/assets/%c3%28.js", http.StatusBadRequest},
		{"missing file", "/nothing.js", http.StatusNotFound},
		{"index", "/", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			resp, err := http.Get(h.url + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET %s = %d, want %d", tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}
