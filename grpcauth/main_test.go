package grpcauth

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// cache, refresher and test server must be stopped by its owner.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
