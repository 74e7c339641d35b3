#include "textflag.h"

// Each byte broadcast over a vector: 0x01, 0x21, '"', '\\'.
DATA specialOne<>+0(SB)/1, $0x01
GLOBL specialOne<>(SB), RODATA|NOPTR, $1
DATA specialLim<>+0(SB)/1, $0x21
GLOBL specialLim<>(SB), RODATA|NOPTR, $1
DATA specialQuote<>+0(SB)/1, $0x22
GLOBL specialQuote<>(SB), RODATA|NOPTR, $1
DATA specialBackslash<>+0(SB)/1, $0x5c
GLOBL specialBackslash<>(SB), RODATA|NOPTR, $1

// func specialIndex32(b []byte) int
//
// For each 32 bytes x: t = x+1 is above 0x20 as a signed byte exactly
// when x is printable ASCII (0x20..0x7e: t is 0x21..0x7f; below 0x20: t is
// 0x01..0x20; 0x7f and above: t is negative, or 0 for 0xff), so the bytes
// to report are 0x21 > t, or x == '"', or x == '\\'. Two vectors are
// tested per round while 64 bytes are left.
TEXT ·specialIndex32(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	MOVQ SI, DI
	VPBROADCASTB specialOne<>(SB), Y4
	VPBROADCASTB specialLim<>(SB), Y5
	VPBROADCASTB specialQuote<>(SB), Y6
	VPBROADCASTB specialBackslash<>(SB), Y7

loop64:
	CMPQ CX, $64
	JB   loop32
	VMOVDQU  (SI), Y0
	VMOVDQU  32(SI), Y8
	VPADDB   Y0, Y4, Y1
	VPADDB   Y8, Y4, Y9
	VPCMPGTB Y1, Y5, Y1
	VPCMPGTB Y9, Y5, Y9
	VPCMPEQB Y0, Y6, Y2
	VPCMPEQB Y8, Y6, Y10
	VPCMPEQB Y0, Y7, Y3
	VPCMPEQB Y8, Y7, Y11
	VPOR     Y2, Y3, Y2
	VPOR     Y10, Y11, Y10
	VPOR     Y1, Y2, Y1
	VPOR     Y9, Y10, Y9
	VPOR     Y1, Y9, Y12
	VPTEST   Y12, Y12
	JNZ      found64
	ADDQ     $64, SI
	SUBQ     $64, CX
	JMP      loop64

found64:
	VPTEST Y1, Y1
	JNZ    found
	ADDQ   $32, SI
	VMOVDQU Y9, Y1
	JMP    found

loop32:
	CMPQ CX, $32
	JB   none
	VMOVDQU  (SI), Y0
	VPADDB   Y0, Y4, Y1
	VPCMPGTB Y1, Y5, Y1 // Y1 = 0x21 > x+1
	VPCMPEQB Y0, Y6, Y2
	VPCMPEQB Y0, Y7, Y3
	VPOR     Y2, Y3, Y2
	VPOR     Y1, Y2, Y1
	VPTEST   Y1, Y1
	JNZ      found
	ADDQ     $32, SI
	SUBQ     $32, CX
	JMP      loop32

found:
	VPMOVMSKB Y1, AX
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
