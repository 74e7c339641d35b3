package api

import "testing"

func TestAcceptsGzip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []string
		want   bool
	}{
		{name: "none"},
		{name: "identity", values: []string{"identity"}},
		{name: "gzip", values: []string{"gzip"}, want: true},
		{name: "listed with others", values: []string{"br, GZIP;q=0.8, zstd"}, want: true},
		{name: "second header", values: []string{"br", "gzip"}, want: true},
		{name: "refused", values: []string{"gzip;q=0"}},
		{name: "refused with decimals", values: []string{"gzip; q=0.000"}},
		{name: "low but taken", values: []string{"gzip;q=0.001"}, want: true},
		{name: "x-gzip is not gzip", values: []string{"x-gzip"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := acceptsGzip(tt.values); got != tt.want {
				t.Errorf("acceptsGzip(%q) = %v, want %v", tt.values, got, tt.want)
			}
		})
	}
}
