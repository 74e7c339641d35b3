package logline

import (
	"testing"
	"time"
)

// TestTimeCacheAppendMember: the cached member of a plugin time holds
// what time.Format writes, for a time seen again, the same instant in another
// zone, another millisecond of the same second, and finer fractions.
func TestTimeCacheAppendMember(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip(err)
	}
	base := time.Date(2026, 12, 6, 21, 46, 25, 946e6, time.UTC)
	times := []time.Time{
		base, base, base.In(berlin), base.In(berlin), base,
		base.Add(time.Millisecond), base.Add(time.Microsecond), base.Add(time.Microsecond),
		base.Add(time.Nanosecond), base.Add(time.Second), base,
	}
	var c timeCache
	for i, tm := range times {
		layout := "2006-01-02T15:04:05.000000000Z07:00"
		switch ns := tm.Nanosecond(); {
		case ns%1e6 == 0:
			layout = "2006-01-02T15:04:05.000Z07:00"
		case ns%1e3 == 0:
			layout = "2006-01-02T15:04:05.000000Z07:00"
		}
		want := memberPluginTime + `"` + tm.Format(layout) + `"`
		if got := string(c.appendMember([]byte("x"), tm)); got != "x"+want {
			t.Errorf("time %d (%v): %s, want x%s", i, tm, got, want)
		}
	}
}
