// Package token generates, checks and compares the secrets vmre hands out:
// the handshake token of each launch, the attach endpoint's token and the
// API's bearer token.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strings"
)

// MinLen is the shortest token [Check] accepts.
const MinLen = 16

// New returns a fresh random token: 26 base32 characters from crypto/rand
// (130 bits), safe in headers, environment variables and shell commands.
func New() string { return rand.Text() }

// errWhiteSpace: a token read from a file or flag is compared byte for byte,
// so white space inside it is a copy-and-paste mistake, not a secret.
var errWhiteSpace = errors.New("token contains white space")

// Check reports whether tok can serve as a secret: at least [MinLen] bytes
// and no white space. Callers classify its error (it wraps no sentinel).
func Check(tok string) error {
	if len(tok) < MinLen {
		return fmt.Errorf("token is %d characters, want at least %d", len(tok), MinLen)
	}
	if strings.ContainsAny(tok, " \t\r\n\v\f") {
		return errWhiteSpace
	}
	return nil
}

// Equal reports whether presented is expected. It compares SHA-256 digests
// in constant time, so its duration depends on neither token's content nor
// its length. An empty expected token matches nothing.
func Equal(presented, expected string) bool {
	if expected == "" {
		return false
	}
	p, e := sha256.Sum256([]byte(presented)), sha256.Sum256([]byte(expected))
	return subtle.ConstantTimeCompare(p[:], e[:]) == 1
}
