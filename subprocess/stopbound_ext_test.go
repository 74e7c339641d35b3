package subprocess_test

import (
	"math"
	"testing"
	"time"

	"github.com/vmre/vmre/subprocess"
)

// TestStopBound: both grace periods with VMShutdown, one without, plus the
// margin; the default grace for zero; saturated, never wrapped, for absurd
// grace periods.
func TestStopBound(t *testing.T) {
	t.Parallel()
	forever := time.Duration(math.MaxInt64)
	for _, tt := range []struct {
		name string
		cfg  subprocess.Config
		want time.Duration
	}{
		{"defaults with vm shutdown", subprocess.Config{VMShutdown: true}, 12 * time.Second},
		{"defaults", subprocess.Config{}, 7 * time.Second},
		{"grace with vm shutdown", subprocess.Config{GracefulTimeout: 3 * time.Second, VMShutdown: true}, 6*time.Second + subprocess.StopMargin},
		{"grace", subprocess.Config{GracefulTimeout: 3 * time.Second}, 3*time.Second + subprocess.StopMargin},
		{"absurd with vm shutdown", subprocess.Config{GracefulTimeout: 1300000 * time.Hour, VMShutdown: true}, forever},
		{"forever", subprocess.Config{GracefulTimeout: forever}, forever},
		{"just below forever", subprocess.Config{GracefulTimeout: forever - subprocess.StopMargin}, forever},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.cfg.StopBound(); got != tt.want {
				t.Errorf("StopBound = %v, want %v", got, tt.want)
			}
		})
	}
}
