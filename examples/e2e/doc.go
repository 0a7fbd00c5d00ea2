// Package e2e holds the end-to-end tests of the demo binaries: they build
// examples/server and examples/client, run them as separate processes over
// real loopback sockets, and restart the server over the same data directory.
package e2e
