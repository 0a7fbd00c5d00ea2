package reliability

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// cache, validator, proxy, issuer and server a fault test starts must be
// stopped by its owner, however the fault left it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
