// Package preflighttest has what tests of the pre-flight checks share.
package preflighttest

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"runtime"
	"testing"
)

// HostELF returns a minimal ELF executable header for this architecture,
// with one PT_INTERP program header naming interp, or no program header
// at all if interp is empty (which the kernel refuses to execute: "exec
// format error", after the pre-flight checks have passed).
func HostELF(t testing.TB, interp string) []byte {
	t.Helper()
	machine, ok := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	if !ok {
		t.Skipf("no ELF header for %s in this test", runtime.GOARCH)
	}
	const ehsize, phentsize = 64, 56
	hdr := elf.Header64{
		Ident:     [elf.EI_NIDENT]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)},
		Type:      uint16(elf.ET_EXEC),
		Machine:   uint16(machine),
		Version:   uint32(elf.EV_CURRENT),
		Ehsize:    ehsize,
		Phentsize: phentsize,
		Shentsize: 64,
	}
	var buf bytes.Buffer
	var progs []any
	if interp != "" {
		hdr.Phoff, hdr.Phnum = ehsize, 1
		progs = append(progs, elf.Prog64{
			Type: uint32(elf.PT_INTERP), Flags: uint32(elf.PF_R), Off: ehsize + phentsize,
			Filesz: uint64(len(interp) + 1), Memsz: uint64(len(interp) + 1), Align: 1,
		}, []byte(interp+"\x00"))
	}
	for _, v := range append([]any{hdr}, progs...) {
		if err := binary.Write(&buf, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}
