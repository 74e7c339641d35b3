package server_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// handler must not start work that outlives its requests.
//
// The exception is net/http's own: after answering an HTTP/1.1 request
// whose body was refused unread (over the size cap), the connection's
// goroutine half-closes it and waits a fixed half second before closing,
// so that the client reads the answer rather than a reset. Server.Close
// does not wait for it; it always ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("net/http.(*conn).closeWriteAndWait"))
}
