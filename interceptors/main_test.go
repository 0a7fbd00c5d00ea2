package interceptors

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must stop what it started: key-set refreshes, fetches, gRPC
// servers and clients.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
