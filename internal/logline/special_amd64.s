#include "textflag.h"

// Each byte broadcast over a vector: 0x01, 0x21.
DATA specialOne<>+0(SB)/1, $0x01
GLOBL specialOne<>(SB), RODATA|NOPTR, $1
DATA specialLim<>+0(SB)/1, $0x21
GLOBL specialLim<>(SB), RODATA|NOPTR, $1

// specialQB maps a byte's low nibble to the one byte with that nibble
// among '"' (0x22) and '\\' (0x5c), else to 0 (itself a control byte).
DATA specialQB<>+0(SB)/8, $0x0000000000220000
DATA specialQB<>+8(SB)/8, $0x0000005c00000000
GLOBL specialQB<>(SB), RODATA|NOPTR, $16

// func specialIndexAVX2(b []byte) int
//
// For each 32 bytes x: t = x+1 is above 0x20 as a signed byte exactly
// when x is printable ASCII (0x20..0x7e: t is 0x21..0x7f; below 0x20: t is
// 0x01..0x20; 0x7f and above: t is negative, or 0 for 0xff), so the bytes
// to report are 0x21 > t, or x == specialQB[x&15] (VPSHUFB: x itself
// only for '"' and '\\', or for 0, which is reported anyway; 0 for x of
// 0x80 and above). Two vectors are tested per round while 64 bytes are
// left, then one while 32 are, then the last 32 bytes, which overlap
// bytes found clean: the first special byte among them is the first of b.
// len(b) must be at least 32.
TEXT ·specialIndexAVX2(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	MOVQ SI, DI
	LEAQ -32(SI)(CX*1), R9 // the last 32 bytes
	VPBROADCASTB specialOne<>(SB), Y4
	VPBROADCASTB specialLim<>(SB), Y5
	VBROADCASTI128 specialQB<>(SB), Y6

	SUBQ $64, CX
	JB   tail32

loop64:
	VMOVDQU  (SI), Y0
	VMOVDQU  32(SI), Y1
	VPADDB   Y0, Y4, Y8
	VPADDB   Y1, Y4, Y9
	VPCMPGTB Y8, Y5, Y8
	VPCMPGTB Y9, Y5, Y9
	VPSHUFB  Y0, Y6, Y10
	VPSHUFB  Y1, Y6, Y11
	VPCMPEQB Y0, Y10, Y10
	VPCMPEQB Y1, Y11, Y11
	VPOR     Y8, Y10, Y0
	VPOR     Y9, Y11, Y1
	VPOR     Y0, Y1, Y12
	VPTEST   Y12, Y12
	JNZ      found64
	ADDQ     $64, SI
	SUBQ     $64, CX
	JAE      loop64

tail32:
	ADDQ $64, CX
	CMPQ CX, $32
	JB   last32
	VMOVDQU  (SI), Y0
	VPADDB   Y0, Y4, Y8
	VPCMPGTB Y8, Y5, Y8 // 0x21 > x+1
	VPSHUFB  Y0, Y6, Y10
	VPCMPEQB Y0, Y10, Y10
	VPOR     Y8, Y10, Y0
	VPTEST   Y0, Y0
	JNZ      found
	ADDQ     $32, SI
	SUBQ     $32, CX

last32:
	TESTQ    CX, CX
	JZ       none
	MOVQ     R9, SI
	VMOVDQU  (SI), Y0
	VPADDB   Y0, Y4, Y8
	VPCMPGTB Y8, Y5, Y8
	VPSHUFB  Y0, Y6, Y10
	VPCMPEQB Y0, Y10, Y10
	VPOR     Y8, Y10, Y0
	VPTEST   Y0, Y0
	JNZ      found
	JMP      none

found64:
	VPTEST Y0, Y0
	JNZ    found
	ADDQ   $32, SI
	VMOVDQU Y1, Y0

found:
	VPMOVMSKB Y0, AX
	BSFL      AX, AX
	SUBQ      DI, SI
	ADDQ      SI, AX
	VZEROUPPER
	MOVQ      AX, ret+24(FP)
	RET

none:
	VZEROUPPER
	MOVQ $-1, ret+24(FP)
	RET
