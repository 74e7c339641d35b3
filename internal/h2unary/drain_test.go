//go:build unix

package h2unary_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestDrainDuringCallSendsGoAway: the launch's drain often begins while
// its deciding call is still being answered (the handler's decision lets
// Bootstrap return, which starts the drain), so the connection must still
// get its GOAWAY once the answer is out. A connection that missed it stayed
// open until the plugin closed it, and a Stop waited its whole grace
// period for the answer to count as read. Many connections, because
// whether the drain was missed depended on which of two goroutines ran
// first.
func TestDrainDuringCallSendsGoAway(t *testing.T) {
	t.Parallel()
	for i := range 200 {
		server, client := smallPair(t)
		drain, startDrain := context.WithCancel(context.Background())
		s := newServer()
		s.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			startDrain()
			grpcOK(w, r)
		})
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ServeConn(context.Background(), drain, server)
		}()
		sv := &served{client: client}
		sv.greet(t)
		if err := sv.fr.WriteSettingsAck(); err != nil {
			t.Fatal(err)
		}
		sv.call(t, 1)
		// The bound only keeps a broken build from hanging the test: the
		// GOAWAY follows the answer at once.
		_ = client.SetReadDeadline(time.Now().Add(30 * time.Second))
		for goAway := false; !goAway; {
			f, err := sv.fr.ReadFrame()
			if err != nil {
				t.Fatalf("connection %d: no GOAWAY after a drain during the call: %v", i, err)
			}
			_, goAway = f.(*http2.GoAwayFrame)
		}
		_ = client.Close()
		<-done
		startDrain()
	}
}
