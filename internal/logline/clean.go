package logline

import (
	"bytes"
	"encoding/binary"
	"unicode/utf8"
)

// printable reports whether every byte of b is printable ASCII (0x20 to
// 0x7e): such a line has no escape sequence and is valid UTF-8, so it needs
// no cleaning. It checks eight bytes at a time.
func printable(b []byte) bool {
	if len(b) < 8 {
		for _, c := range b {
			if c < 0x20 || c >= 0x7f {
				return false
			}
		}
		return true
	}
	last := binary.LittleEndian.Uint64(b[len(b)-8:])
	var bad uint64
	for len(b) >= 32 {
		bad |= unprintable(binary.LittleEndian.Uint64(b)) | unprintable(binary.LittleEndian.Uint64(b[8:])) |
			unprintable(binary.LittleEndian.Uint64(b[16:])) | unprintable(binary.LittleEndian.Uint64(b[24:]))
		if bad != 0 {
			return false
		}
		b = b[32:]
	}
	for len(b) > 8 {
		bad |= unprintable(binary.LittleEndian.Uint64(b))
		b = b[8:]
	}
	// The last word may overlap bytes already checked: that changes nothing.
	return bad|unprintable(last) == 0
}

// unprintable returns a word with bit 7 of some byte set if and only if some
// byte of x is below 0x20 or above 0x7e. A term can also flag the byte
// above a flagged one (a borrow or carry runs on), so only the word as a
// whole is exact.
func unprintable(x uint64) uint64 {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	return (x | // 0x80 and above
		(x + ones) | // 0x7f (with no byte above 0x7f, nothing carries)
		((x - 0x20*ones) &^ x)) & highs // below 0x20
}

// ascii reports whether every byte of b is below 0x80, eight at a time.
func ascii(b []byte) bool {
	var or uint64
	for len(b) >= 8 {
		or |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, c := range b {
		or |= uint64(c)
	}
	return or&0x8080808080808080 == 0
}

// appendClean appends b to dst without ANSI escape sequences (CSI, OSC,
// DCS/SOS/PM/APC strings and two-byte escapes) and with every run of
// invalid UTF-8 replaced by one U+FFFD. Other control characters stay: the
// log writers escape them. The text between escapes is copied whole when
// it is valid UTF-8, which it nearly always is.
func appendClean(dst, b []byte) []byte {
	for len(b) > 0 {
		j := bytes.IndexByte(b, 0x1b)
		if j < 0 {
			return appendValid(dst, b)
		}
		dst = appendValid(dst, b[:j])
		b = b[skipEscape(b, j):]
	}
	return dst
}

// appendValid appends b to dst with every run of invalid UTF-8 replaced by
// one U+FFFD.
func appendValid(dst, b []byte) []byte {
	if ascii(b) || utf8.Valid(b) {
		return append(dst, b...)
	}
	invalid := false
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			dst = append(dst, c)
			invalid = false
			i++
			continue
		}
		_, n := utf8.DecodeRune(b[i:])
		if n == 1 {
			if !invalid {
				dst = utf8.AppendRune(dst, utf8.RuneError)
				invalid = true
			}
			i++
			continue
		}
		dst = append(dst, b[i:i+n]...)
		invalid = false
		i += n
	}
	return dst
}

// skipEscape returns the index after the escape sequence that starts with
// the ESC at b[i]. An unterminated sequence runs to the end of b.
func skipEscape(b []byte, i int) int {
	i++
	if i >= len(b) {
		return i
	}
	switch b[i] {
	case '[': // CSI: parameters 0x30-0x3f, intermediates 0x20-0x2f, final 0x40-0x7e
		for i++; i < len(b); i++ {
			if c := b[i]; c >= 0x40 && c <= 0x7e {
				return i + 1
			} else if c < 0x20 || c > 0x3f {
				return i // malformed: drop the introducer only
			}
		}
		return i
	case ']', 'P', 'X', '^', '_': // strings ended by BEL (OSC only) or ST (ESC \)
		osc := b[i] == ']'
		for i++; i < len(b); i++ {
			if osc && b[i] == 0x07 {
				return i + 1
			}
			if b[i] == 0x1b && i+1 < len(b) && b[i+1] == '\\' {
				return i + 2
			}
		}
		return i
	}
	for i < len(b) && b[i] >= 0x20 && b[i] <= 0x2f { // intermediates
		i++
	}
	if i < len(b) && b[i] >= 0x30 && b[i] <= 0x7e {
		i++
	}
	return i
}
