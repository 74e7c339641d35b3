//go:build !amd64

package logline

const useAVX2 = false

func specialIndexAVX2(b []byte) int { return specialIndexWords(b, 0) }
