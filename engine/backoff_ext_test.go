package engine_test

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/vmre/vmre"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/internal/syncbuf"
)

var crashed = vmre.ExitStatus{Code: 2}

// superviseWatched launches one runtime under policy with a fake clock and
// watches it from its snapshot.
func superviseWatched(t *testing.T, policy engine.RestartPolicy, health engine.HealthCheck, steps ...fakeStep) (*fakeLauncher, *engine.Engine, *fakeClock, engine.Runtime, *engine.Watcher) {
	t.Helper()
	return superviseWith(t, nil, policy, health, steps...)
}

// superviseWith is superviseWatched with mod changing the engine's config.
func superviseWith(t *testing.T, mod func(*engine.Config), policy engine.RestartPolicy, health engine.HealthCheck, steps ...fakeStep) (*fakeLauncher, *engine.Engine, *fakeClock, engine.Runtime, *engine.Watcher) {
	t.Helper()
	l := &fakeLauncher{steps: steps}
	clock := newFakeClock()
	e := newEngine(t, l, func(c *engine.Config) {
		c.Clock, c.SampleInterval = clock, -1
		if mod != nil {
			mod(c)
		}
	})
	s := spec
	s.Restart, s.Health = policy, health
	first, err := e.Launch(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	return l, e, clock, first, watchFromSnapshot(t, e)
}

// expectBackoff reads the change that puts id in backoff and checks its
// wait against the jitter's bounds: (4/5 d, d].
func expectBackoff(t *testing.T, w *engine.Watcher, clock *fakeClock, id string, d time.Duration, failures int) time.Duration {
	t.Helper()
	rt := expectState(t, w, id, engine.StateBackoff)
	wait := rt.NextAttempt.Sub(clock.Now())
	if wait > d || wait < d*4/5 {
		t.Fatalf("backoff wait = %s, want within (%s, %s]", wait, d*4/5, d)
	}
	if rt.Failures != failures {
		t.Fatalf("failures = %d, want %d", rt.Failures, failures)
	}
	return wait
}

// relaunched advances the clock by wait and expects the runtime to start
// and run again as launch number n (from 0).
func relaunched(t *testing.T, l *fakeLauncher, w *engine.Watcher, clock *fakeClock, id string, wait time.Duration, n int) {
	t.Helper()
	clock.advance(wait - time.Nanosecond)
	if got := l.launches(); got != n {
		t.Fatalf("launches before the backoff passed = %d, want %d", got, n)
	}
	clock.advance(time.Nanosecond)
	expectState(t, w, id, engine.StateStarting)
	rt := expectState(t, w, id, engine.StateRunning)
	if rt.Restarts != n || !rt.NextAttempt.IsZero() {
		t.Fatalf("after relaunch: restarts %d next attempt %v, want %d and none", rt.Restarts, rt.NextAttempt, n)
	}
}

func TestCrashLoopBacksOffThenFails(t *testing.T) {
	t.Parallel()
	policy := engine.RestartPolicy{Mode: engine.RestartOnFailure, InitialBackoff: time.Second, MaxBackoff: 4 * time.Second, MaxRestarts: 4, Window: time.Minute}
	var log syncbuf.Buffer
	l, e, clock, first, w := superviseWith(t, func(c *engine.Config) { c.Log = zerolog.New(&log) }, policy, engine.HealthCheck{})
	// 1 s, doubling, capped at 4 s.
	var waits []string
	for i, d := range []time.Duration{1, 2, 4, 4} {
		l.proc(i).end(crashed)
		wait := expectBackoff(t, w, clock, first.ID, d*time.Second, i+1)
		waits = append(waits, wait.Round(time.Millisecond).String())
		relaunched(t, l, w, clock, first.ID, wait, i+1)
	}
	// The fifth failure within the window is one more than MaxRestarts.
	l.proc(4).end(crashed)
	rt := expectState(t, w, first.ID, engine.StateFailed)
	if !rt.NextAttempt.IsZero() {
		t.Fatalf("failed runtime has a next attempt: %v", rt.NextAttempt)
	}
	clock.advance(time.Hour)
	if got := l.launches(); got != 5 {
		t.Fatalf("launches = %d after giving up, want 5", got)
	}
	// The log says each crash was one, and that the runtime will not come
	// back, once and after the last crash.
	var ended, gaveUp []map[string]any
	var backoffs []string
	for _, line := range strings.Split(strings.TrimSpace(log.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		switch ev["message"] {
		case "runtime ended":
			ended = append(ended, ev)
		case "runtime relaunch scheduled":
			// A duration with its unit, as the state's message has it.
			b, _ := ev["backoff"].(string)
			backoffs = append(backoffs, b)
		case verdict:
			gaveUp = append(gaveUp, ev)
			if len(ended) != 5 {
				t.Errorf("gave up after %d ends, want 5", len(ended))
			}
		}
	}
	for _, ev := range ended {
		if ev["level"] != "warn" || ev["exit"] != crashed.String() {
			t.Errorf("crash logged as %v", ev)
		}
	}
	if len(ended) != 5 || len(gaveUp) != 1 || gaveUp[0]["level"] != "error" ||
		gaveUp[0]["reason"] != "5 failures within 1m0s (max restarts 4)" || gaveUp[0]["id"] != first.ID {
		t.Errorf("%d ends, giving up %v; want 5 and one error event with the reason", len(ended), gaveUp)
	}
	if !slices.Equal(backoffs, waits) {
		t.Errorf("relaunches logged with backoff %q, want %q", backoffs, waits)
	}
	// A manual Restart is not a failure and gives the budget back.
	got, err := e.Restart(t.Context(), first.ID)
	if err != nil || got.State != engine.StateRunning || got.Failures != 0 {
		t.Fatalf("Restart = %+v, %v; want running with no failures", got, err)
	}
}

func TestBackoffResetsAfterStableWindow(t *testing.T) {
	t.Parallel()
	policy := engine.RestartPolicy{Mode: engine.RestartOnFailure, InitialBackoff: time.Second, MaxBackoff: time.Minute, MaxRestarts: 3, Window: time.Minute}
	l, _, clock, first, w := superviseWatched(t, policy, engine.HealthCheck{})
	l.proc(0).end(crashed)
	relaunched(t, l, w, clock, first.ID, expectBackoff(t, w, clock, first.ID, time.Second, 1), 1)
	l.proc(1).end(crashed)
	relaunched(t, l, w, clock, first.ID, expectBackoff(t, w, clock, first.ID, 2*time.Second, 2), 2)
	// Ran a whole window: the next failure starts over at 1 s, and the
	// earlier failures no longer count towards MaxRestarts.
	// Twice over: five failures in all, but never more than three within
	// a window.
	for i := 2; i < 6; i++ {
		if i%2 == 0 {
			clock.advance(time.Minute)
		}
		l.proc(i).end(crashed)
		n := 1 + i%2
		wait := expectBackoff(t, w, clock, first.ID, time.Second<<(n-1), n)
		relaunched(t, l, w, clock, first.ID, wait, i+1)
	}
}

// A failure that no relaunch follows (here under policy never) is logged
// as the runtime's end, once, with the reason.
func TestFailureWithoutRelaunchIsLogged(t *testing.T) {
	t.Parallel()
	var log syncbuf.Buffer
	l, _, _, first, w := superviseWith(t, func(c *engine.Config) { c.Log = zerolog.New(&log) },
		engine.RestartPolicy{Mode: engine.RestartNever}, engine.HealthCheck{})
	l.proc(0).end(crashed)
	expectState(t, w, first.ID, engine.StateFailed)
	if got := strings.Count(log.String(), verdictMessage); got != 1 || !strings.Contains(log.String(), `"reason":"restart policy never"`) {
		t.Errorf("want one %s with the reason:\n%s", verdictMessage, log.String())
	}
}

// verdict is the message of the engine's log event for a runtime that
// failed and will not be relaunched; verdictMessage is that member of the
// event's JSON.
const (
	verdict        = "runtime failed; not relaunching"
	verdictMessage = `"message":"` + verdict + `"`
)

func TestCleanExitUnderPolicies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mode engine.RestartMode
		want engine.State
	}{
		{name: "on-failure leaves it", mode: engine.RestartOnFailure, want: engine.StateExited},
		{name: "always relaunches", mode: engine.RestartAlways, want: engine.StateBackoff},
		{name: "never leaves it", mode: engine.RestartNever, want: engine.StateExited},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var log syncbuf.Buffer
			l, _, _, first, w := superviseWith(t, func(c *engine.Config) { c.Log = zerolog.New(&log) },
				engine.RestartPolicy{Mode: tc.mode}, engine.HealthCheck{})
			l.proc(0).end(vmre.ExitStatus{})
			expectState(t, w, first.ID, tc.want)
			// A clean exit is not a failure.
			if strings.Contains(log.String(), verdictMessage) {
				t.Errorf("a clean exit was logged as a failure:\n%s", log.String())
			}
		})
	}
}

func TestStopCancelsBackoff(t *testing.T) {
	t.Parallel()
	l, e, clock, first, w := superviseWatched(t, engine.RestartPolicy{Mode: engine.RestartAlways},
		engine.HealthCheck{}, fakeStep{}, fakeStep{err: errors.New("no")})
	l.proc(0).end(crashed)
	expectBackoff(t, w, clock, first.ID, time.Second, 1)
	rt, err := e.Stop(t.Context(), first.ID)
	if err != nil || rt.State != engine.StateExited || !rt.NextAttempt.IsZero() {
		t.Fatalf("Stop in backoff = %+v, %v; want exited with no next attempt", rt, err)
	}
	expectState(t, w, first.ID, engine.StateExited)
	clock.advance(time.Hour)
	if got := l.launches(); got != 1 {
		t.Fatalf("launches after a Stop in backoff = %d, want 1", got)
	}
}

func TestRestartInBackoffStartsNow(t *testing.T) {
	t.Parallel()
	// The second launch fails: its backoff is the second one (2 s).
	l, e, clock, first, w := superviseWatched(t, engine.RestartPolicy{Mode: engine.RestartOnFailure},
		engine.HealthCheck{}, fakeStep{}, fakeStep{err: errors.New("boom")}, fakeStep{})
	l.proc(0).end(crashed)
	relaunched := expectBackoff(t, w, clock, first.ID, time.Second, 1)
	clock.advance(relaunched)
	expectState(t, w, first.ID, engine.StateStarting)
	expectBackoff(t, w, clock, first.ID, 2*time.Second, 2)
	// Now, without waiting for the clock, and not as a failure.
	rt, err := e.Restart(t.Context(), first.ID)
	if err != nil || rt.State != engine.StateRunning || rt.Failures != 0 {
		t.Fatalf("Restart in backoff = %+v, %v; want running, no failures", rt, err)
	}
	clock.advance(time.Hour)
	if got := l.launches(); got != 3 {
		t.Fatalf("launches = %d, want 3 (the backoff's relaunch was cancelled)", got)
	}
}
