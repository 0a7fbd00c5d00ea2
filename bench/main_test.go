package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no benchmark leaves a goroutine behind: each stops the
// servers, caches and validators it started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
