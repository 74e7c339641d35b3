package logline

import "golang.org/x/sys/cpu"

var useAVX2 = cpu.X86.HasAVX2

// specialIndexAVX2 is specialIndex for a b of at least 32 bytes, with
// AVX2.
//
//go:noescape
func specialIndexAVX2(b []byte) int
