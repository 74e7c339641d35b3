package server_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: the
// handler must not start work that outlives its requests.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
