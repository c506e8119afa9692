package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/firebreak-ir/firebreak/controller/store"
)

func TestConsoleLinkSignsInOnce(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		s := b.openFresh(t)
		now := time.Unix(1_800_000_000, 0)
		if err := s.CreateConsoleLink(ctx, &store.ConsoleLink{Hash: "h1", Operator: "alice", CertSerial: "s1", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateConsoleLink(ctx, &store.ConsoleLink{Hash: "h2", Operator: "alice", CertSerial: "s1", CreatedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, hash string
			at         time.Time
			want       error
		}{
			{"first use signs in", "h1", now.Add(time.Second), nil},
			{"second use is refused", "h1", now.Add(2 * time.Second), store.ErrConsoleLinkUsed},
			{"an unknown link is refused", "nope", now, store.ErrConsoleLinkUnknown},
			{"an expired link is refused", "h2", now.Add(time.Minute), store.ErrConsoleLinkExpired},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				l, err := s.ConsumeConsoleLink(ctx, tt.hash, tt.at)
				if !errors.Is(err, tt.want) {
					t.Fatalf("ConsumeConsoleLink = %v, want %v", err, tt.want)
				}
				if err == nil && (l.Operator != "alice" || l.CertSerial != "s1") {
					t.Fatalf("link = %+v, want alice's", l)
				}
			})
		}
	})
}

func TestConsoleSessionTimeouts(t *testing.T) {
	eachBackend(t, func(t *testing.T, b backend) {
		ctx := context.Background()
		// Two store instances on one database, as two controllers: a
		// session made through one is served and ended by the other.
		open := b.fresh(t)
		s1, s2 := open(t), open(t)
		now := time.Unix(1_800_000_000, 0)
		idle := 10 * time.Minute
		for _, h := range []string{"live", "idle", "old", "out"} {
			if err := s1.CreateConsoleSession(ctx, &store.ConsoleSession{Hash: h, Operator: "alice", CertSerial: "s1", Role: 2, Source: "link",
				CSRF: "c", CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s2.EndConsoleSession(ctx, "out", now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name, hash string
			at         time.Time
			wantErr    bool
		}{
			{"a live session is served by another controller", "live", now.Add(5 * time.Minute), false},
			{"use keeps it alive past the first idle window", "live", now.Add(14 * time.Minute), false},
			{"an idle session has ended", "idle", now.Add(11 * time.Minute), true},
			{"the absolute timeout ends it however busy", "live", now.Add(time.Hour), true},
			{"a logged-out session has ended everywhere", "out", now.Add(2 * time.Second), true},
			{"an unknown session has ended", "nope", now, true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				cs, err := s2.TouchConsoleSession(ctx, tt.hash, tt.at, idle)
				if tt.wantErr {
					if !errors.Is(err, store.ErrConsoleSessionEnded) {
						t.Fatalf("TouchConsoleSession = %v, want ErrConsoleSessionEnded", err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if cs.Operator != "alice" || cs.Role != 2 || cs.CSRF != "c" || !cs.LastSeen.Equal(tt.at) {
					t.Fatalf("session = %+v", cs)
				}
			})
		}
	})
}
