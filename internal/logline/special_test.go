package logline

import (
	"bytes"
	"strings"
	"testing"
)

// specialIndexNaive is specialIndex's definition, a byte at a time.
func specialIndexNaive(b []byte) int {
	for i, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return i
		}
	}
	return -1
}

func TestSpecialIndex(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 100)
	for _, tc := range []struct {
		name string
		in   string
		want int
	}{
		{"empty", "", -1},
		{"printable", "hello, world ~!#$%&'()*+,-./09:;<=>?@AZ[]^_`az{|}", -1},
		{"quote", `ab"c`, 2},
		{"backslash", `ab\c`, 2},
		{"ESC", "ab\x1bc", 2},
		{"NUL", "\x00", 0},
		{"0x1f", "a\x1f", 1},
		{"space is printable", " ", -1},
		{"tilde is printable", "~", -1},
		{"DEL", "a\x7f", 1},
		{"0x80", "a\x80", 1},
		{"0xff", "a\xff", 1},
		{"UTF-8", "aé", 1},
		{"32 printable then ESC", long[:32] + "\x1b", 32},
		{"in the second vector", long[:40] + `"`, 40},
		{"in the tail after vectors", long[:64] + long[:5] + "\t", 69},
		{"first of several", long[:33] + "\xff" + long[:3] + `"`, 33},
		{"each vector byte 31", long[:31] + "\\" + long[:40], 31},
		{"long printable", long + long + long, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := specialIndex([]byte(tc.in)); got != tc.want {
				t.Errorf("specialIndex(%q) = %d, want %d", tc.in, got, tc.want)
			}
			if got := specialIndexWords([]byte(tc.in), 0); got != tc.want {
				t.Errorf("specialIndexWords(%q) = %d, want %d", tc.in, got, tc.want)
			}
		})
	}
}

// TestSpecialIndexEveryByte puts each of the 256 byte values at each place
// of lines of 1 to 100 bytes, against the naive definition.
func TestSpecialIndexEveryByte(t *testing.T) {
	t.Parallel()
	for n := 1; n <= 100; n++ {
		b := bytes.Repeat([]byte{'a'}, n)
		for i := range n {
			for c := range 256 {
				b[i] = byte(c)
				if got, want := specialIndex(b), specialIndexNaive(b); got != want {
					t.Fatalf("len %d, byte %#x at %d: specialIndex = %d, want %d", n, c, i, got, want)
				}
			}
			b[i] = 'a'
		}
	}
}

// FuzzSpecialIndex: the vector and word paths agree with the definition
// at every alignment.
func FuzzSpecialIndex(f *testing.F) {
	f.Add([]byte("[12-06|21:46:25.946] \x1b[0;33mWARN\x1b[0;0m <X Chain> vm/vm.go:252 msg {\"height\": 42}"))
	f.Add([]byte(strings.Repeat("x", 70) + "\xc3\xa9"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for off := 0; off < len(b) && off < 40; off++ {
			s := b[off:]
			want := specialIndexNaive(s)
			if got := specialIndex(s); got != want {
				t.Fatalf("specialIndex(%q) = %d, want %d", s, got, want)
			}
			if got := specialIndexWords(s, 0); got != want {
				t.Fatalf("specialIndexWords(%q) = %d, want %d", s, got, want)
			}
		}
	})
}
