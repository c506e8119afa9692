package apiview

import "testing"

func TestParseMaxErrors(t *testing.T) {
	tests := []struct {
		in     string
		wantOK bool
	}{
		{"", true},
		{"  ", true},
		{"0", true},
		{"5", true},
		{" 5 ", true},
		{"10%", true},
		{"100%", true},
		{"0%", true},
		{"101%", false},
		{"-1", false},
		{"5.5", false},
		{"x", false},
		{"%", false},
		{"lots", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			err := ParseMaxErrors(tt.in)
			if (err == nil) != tt.wantOK {
				t.Fatalf("ParseMaxErrors(%q) = %v, want ok %v", tt.in, err, tt.wantOK)
			}
		})
	}
}
