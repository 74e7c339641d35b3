package logline

import "golang.org/x/sys/cpu"

var useAVX2 = cpu.X86.HasAVX2

// specialIndex32 is specialIndex for a b whose length is a multiple of 32,
// with AVX2.
//
//go:noescape
func specialIndex32(b []byte) int
