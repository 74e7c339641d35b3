//go:build !amd64

package logline

const useAVX2 = false

func specialIndex32(b []byte) int { return specialIndexWords(b, 0) }
