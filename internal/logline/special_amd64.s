#include "textflag.h"

// func specialIndex32(b []byte) int
//
// For each 32 bytes x: t = x+1 is above 0x20 as a signed byte exactly
// when x is printable ASCII (0x20..0x7e: t is 0x21..0x7f; below 0x20: t is
// 0x01..0x20; 0x7f and above: t is negative, or 0 for 0xff), so the bytes
// to report are 0x21 > t, or x == '"', or x == '\\'.
TEXT ·specialIndex32(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	MOVQ SI, DI
	MOVL $0x01, AX
	MOVQ AX, X4
	VPBROADCASTB X4, Y4 // 0x01
	MOVL $0x21, AX
	MOVQ AX, X5
	VPBROADCASTB X5, Y5 // 0x21
	MOVL $0x22, AX
	MOVQ AX, X6
	VPBROADCASTB X6, Y6 // '"'
	MOVL $0x5c, AX
	MOVQ AX, X7
	VPBROADCASTB X7, Y7 // '\\'

loop:
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
	JMP      loop

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
