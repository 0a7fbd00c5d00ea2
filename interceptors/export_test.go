package interceptors

import (
	"context"
	"time"
)

// withClock makes the validator read time from now (tests only).
func withClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// refreshKeys fetches the key set now, as the background refresh does.
func (v *Validator) refreshKeys(ctx context.Context) error {
	s := v.keys.(*jwksSource)
	c, _ := s.startFetch(true)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return c.err
	}
}
