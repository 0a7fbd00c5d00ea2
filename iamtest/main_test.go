package iamtest

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// fake must stop all its goroutines on Close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
