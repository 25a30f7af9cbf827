package greet

import (
	"strings"
	"testing"
)

func TestHello(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"gopher", "Hello, gopher!"},
		{"  ada  ", "Hello, ada!"},
		{"", "Hello, world!"},
	} {
		if got := Hello(tc.in); !strings.HasPrefix(got, tc.want) {
			t.Errorf("Hello(%q) = %q, want prefix %q", tc.in, got, tc.want)
		}
	}
}
