package logline

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"unicode/utf8"
)

// printable reports whether every byte of b is printable ASCII (0x20 to
// 0x7e): such a line has no escape sequence and is valid UTF-8, so it needs
// no cleaning. It checks eight bytes at a time and branches once per 64.
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
	for len(b) >= 64 {
		bad |= unprintableAny(binary.LittleEndian.Uint64(b)) | unprintableAny(binary.LittleEndian.Uint64(b[8:])) |
			unprintableAny(binary.LittleEndian.Uint64(b[16:])) | unprintableAny(binary.LittleEndian.Uint64(b[24:])) |
			unprintableAny(binary.LittleEndian.Uint64(b[32:])) | unprintableAny(binary.LittleEndian.Uint64(b[40:])) |
			unprintableAny(binary.LittleEndian.Uint64(b[48:])) | unprintableAny(binary.LittleEndian.Uint64(b[56:]))
		if bad&highs != 0 {
			return false
		}
		b = b[64:]
	}
	for len(b) > 8 {
		bad |= unprintableAny(binary.LittleEndian.Uint64(b))
		b = b[8:]
	}
	// The last word may overlap bytes already checked: that changes nothing.
	return (bad|unprintableAny(last))&highs == 0
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// unprintableAny returns a word whose bits 7 (highs) are all clear if and
// only if every byte of x is printable ASCII; its other bits mean nothing.
// A printable byte plus 0x01 stays below 0x80 and minus 0x20 stays at or
// above 0, so neither carries nor borrows; every other byte sets bit 7 in
// one of them (0x7f: +0x01 gives 0x80; below 0x20: -0x20 wraps to 0xe0 and
// above; 0x80 and above: -0x20 keeps bit 7 from 0xa0, +0x01 from 0x80 to
// 0xfe, and 0xff-0x20 is 0xdf). The lowest such byte gets no carry or
// borrow from below, so it is flagged whatever it does to the bytes above.
func unprintableAny(x uint64) uint64 {
	return (x + ones) | (x - 0x20*ones)
}

// unprintable returns a word with bit 7 of some byte set if and only if some
// byte of x is below 0x20 or above 0x7e. A term can also flag the byte
// above a flagged one (a borrow or carry runs on), so only the word as a
// whole is exact.
func unprintable(x uint64) uint64 {
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
	dst, _ = appendCleanRuns(dst, b)
	return dst
}

// appendCleanText is appendClean that also reports whether what it
// appended is all printable ASCII, and how long its start is that needs
// no JSON escaping (see [Line.safe]). The runs between escapes up to the
// first byte that is neither printable nor ESC, nor '"' or '\\', are found
// by one specialIndex pass each and copied whole; the rest, most often a
// few bytes of a line's fields, by appendCleanRuns.
func appendCleanText(dst, b []byte) (out []byte, all bool, safeTo int) {
	return appendCleanTextAt(dst, b, specialIndex(b))
}

// appendCleanTextAt is appendCleanText for a b whose first special byte
// (see specialIndex) is known to be at k.
func appendCleanTextAt(dst, b []byte, k int) (out []byte, all bool, safeTo int) {
	start := len(dst)
	for {
		if k < 0 {
			dst = append(dst, b...)
			return dst, true, len(dst) - start
		}
		dst = append(dst, b[:k]...)
		if b[k] != 0x1b {
			// Only ASCII lies before b[k], so reading UTF-8 from b[k]
			// replaces the same bytes as reading it from the run's start.
			safeTo = len(dst) - start
			if printable(b[k:]) {
				// Most often a line's fields: no escape sequence,
				// nothing to replace.
				return append(dst, b[k:]...), true, safeTo
			}
			dst, all = appendCleanRuns(dst, b[k:])
			return dst, all, safeTo
		}
		b = b[skipEscape(b, k):]
		k = specialIndex(b)
	}
}

// appendCleanRuns is appendClean that also reports whether what it
// appended is all printable ASCII, found while checking each run between
// escapes.
func appendCleanRuns(dst, b []byte) ([]byte, bool) {
	all := true
	for len(b) > 0 {
		j := bytes.IndexByte(b, 0x1b)
		if j < 0 {
			j = len(b)
		}
		if printable(b[:j]) {
			dst = append(dst, b[:j]...)
		} else {
			dst, all = appendValid(dst, b[:j]), false
		}
		if j == len(b) {
			break
		}
		b = b[skipEscape(b, j):]
	}
	return dst, all
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
		// Colour codes ("\x1b[0;33m") are parameters and a final byte:
		// the parameters are skipped eight bytes a test (a parameter
		// byte's high nibble is 3), the rest byte by byte.
		for i++; i+8 <= len(b); i += 8 {
			if y := binary.LittleEndian.Uint64(b[i:])&(0xf0*ones) ^ 0x30*ones; y != 0 {
				i += bits.TrailingZeros64(y) >> 3
				break
			}
		}
		for ; i < len(b); i++ {
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
