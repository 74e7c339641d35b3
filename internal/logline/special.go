package logline

import "encoding/binary"

// specialIndex returns the index of the first byte of b that a line's
// text cannot pass on as it is: one that is not printable ASCII (below
// 0x20, among them ESC, or above 0x7e) or that JSON escapes ('"', '\\'); -1
// if there is none. One pass finds what would otherwise take three (the
// escape sequences, the printable check and a message's quotes): on amd64
// with AVX2 it tests 32 bytes with a few vector instructions, where a
// bytes.IndexByte pass per byte value and a word-at-a-time printable check
// take about four times as many.
func specialIndex(b []byte) int {
	if useAVX2 && len(b) >= 32 {
		return specialIndexAVX2(b)
	}
	return specialIndexWords(b, 0)
}

// specialIndexWords is specialIndex from b[i:] eight bytes at a time:
// unsafeBytes is exact for a word as a whole, so a flagged word holds a
// special byte, found byte by byte.
func specialIndexWords(b []byte, i int) int {
	for ; i+8 <= len(b); i += 8 {
		if unsafeBytes(binary.LittleEndian.Uint64(b[i:])) != 0 {
			break
		}
	}
	for ; i < len(b); i++ {
		if c := b[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return i
		}
	}
	return -1
}
