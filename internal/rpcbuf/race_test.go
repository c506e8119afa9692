//go:build race

package rpcbuf

// raceEnabled is true when the tests run under the race detector.
const raceEnabled = true
