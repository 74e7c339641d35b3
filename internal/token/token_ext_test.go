package token_test

import (
	"strings"
	"testing"

	"github.com/vmre/vmre/internal/token"
)

func TestNew(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		tok := token.New()
		if err := token.Check(tok); err != nil {
			t.Fatalf("New() = %q fails Check: %v", tok, err)
		}
		if strings.Trim(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" || seen[tok] {
			t.Fatalf("bad or repeated token %q", tok)
		}
		seen[tok] = true
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		tok     string
		wantErr bool
	}{
		{name: "min length", tok: strings.Repeat("a", token.MinLen)},
		{name: "one short", tok: strings.Repeat("a", token.MinLen-1), wantErr: true},
		{name: "empty", tok: "", wantErr: true},
		{name: "inner space", tok: "0123456789 abcdefgh", wantErr: true},
		{name: "inner newline", tok: "0123456789\nabcdefgh", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := token.Check(tt.tok); (err != nil) != tt.wantErr {
				t.Errorf("Check(%q) = %v, want error %t", tt.tok, err, tt.wantErr)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	t.Parallel()
	const tok = "test-token-0123456789abcdef"
	tests := []struct {
		name                string
		presented, expected string
		want                bool
	}{
		{name: "same", presented: tok, expected: tok, want: true},
		{name: "longer", presented: tok + "x", expected: tok},
		{name: "shorter", presented: tok[:len(tok)-1], expected: tok},
		{name: "other", presented: "wrong-token-0123456789abcd", expected: tok},
		{name: "empty presented", presented: "", expected: tok},
		{name: "empty expected matches nothing", presented: "", expected: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := token.Equal(tt.presented, tt.expected); got != tt.want {
				t.Errorf("Equal(%q, %q) = %t, want %t", tt.presented, tt.expected, got, tt.want)
			}
		})
	}
}
