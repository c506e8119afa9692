package controller

import (
	"testing"
	"time"
)

func TestNextReadiness(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name string
		last time.Time
		want time.Duration
	}{
		{"never reviewed", time.Time{}, 0},
		{"a period old", now.Add(-24 * time.Hour), 0},
		{"overdue", now.Add(-30 * time.Hour), 0},
		{"recent", now.Add(-20 * time.Hour), 4 * time.Hour},
	} {
		if got := nextReadiness(tt.last, 24*time.Hour, now); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
