package awsemu

import (
	"errors"
	"log/slog"
	"time"
)

// Config configures an Emulator.
type Config struct {
	// Clock is the emulated time: session expiry, condition keys such as
	// aws:CurrentTime and aws:TokenIssueTime, resource timestamps, CloudTrail
	// event times and the LookupEvents rate limit all read it. Defaults to
	// time.Now. The signing time of a request is checked against the host's
	// wall clock instead, because that is what the SDK signs with.
	Clock func() time.Time
	// Logger receives one debug line per call. Defaults to a discarding
	// logger.
	Logger *slog.Logger
	// Seed, when set, is loaded by New.
	Seed *Seed
	// IDSalt makes generated identifiers differ between emulators; two
	// emulators with the same salt, seed and call sequence mint the same ids.
	// Defaults to "firebreak".
	IDSalt string
	// MaxClockSkew is how far a request's signing time may be from the wall
	// clock, as AWS allows 15 minutes. Defaults to 15 minutes; a negative
	// value turns the check off.
	MaxClockSkew time.Duration
	// CallLogLimit bounds the call log Calls returns; the oldest calls are
	// dropped first. Defaults to 100000.
	CallLogLimit int
	// TrailEventLimit bounds the CloudTrail events kept per account and
	// region; the oldest are dropped first. Defaults to 100000.
	TrailEventLimit int
	// LookupEventsPerSecond is CloudTrail's LookupEvents rate limit per
	// account and region. Defaults to 2, AWS's limit.
	LookupEventsPerSecond float64
	// MaxBodyBytes bounds a request body. Defaults to 10 MiB.
	MaxBodyBytes int64
	// MinResponseTime is the least time the emulator takes to answer a
	// request that carries a body. AWS never answers within microseconds and
	// the SDK depends on it: smithy-go's request body returns io.EOF from
	// WriteTo once the SDK has closed it, which it does as soon as the
	// response headers arrive; if that happens before net/http has finished
	// its read after the body, net/http drops the connection in the middle
	// of the response ("use of closed network connection",
	// aws/aws-sdk-go-v2#2737). Defaults to 2ms; a negative value answers at
	// once.
	MinResponseTime time.Duration
}

// CheckAndSetDefaults validates the configuration and fills in defaults.
func (c *Config) CheckAndSetDefaults() error {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.IDSalt == "" {
		c.IDSalt = "firebreak"
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = 15 * time.Minute
	}
	if c.CallLogLimit < 0 || c.TrailEventLimit < 0 || c.LookupEventsPerSecond < 0 || c.MaxBodyBytes < 0 {
		return errors.New("awsemu: CallLogLimit, TrailEventLimit, LookupEventsPerSecond and MaxBodyBytes must not be negative")
	}
	if c.CallLogLimit == 0 {
		c.CallLogLimit = 100000
	}
	if c.TrailEventLimit == 0 {
		c.TrailEventLimit = 100000
	}
	if c.LookupEventsPerSecond == 0 {
		c.LookupEventsPerSecond = 2
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 10 << 20
	}
	if c.MinResponseTime == 0 {
		c.MinResponseTime = 2 * time.Millisecond
	}
	return nil
}
