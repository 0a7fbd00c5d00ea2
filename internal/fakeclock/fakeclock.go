// Package fakeclock is a wall clock for tests that moves only when told.
package fakeclock

import (
	"sync"
	"time"
)

// Clock is a wall clock that moves only when told. It is safe for
// concurrent use; its Now method fits the clock hooks of the packages under
// test.
type Clock struct {
	mu sync.Mutex // guards t
	t  time.Time
}

// New returns a Clock that reads t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d (backwards for a negative d).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
