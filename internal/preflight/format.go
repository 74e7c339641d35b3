package preflight

import (
	"bufio"
	"bytes"
	"debug/elf"
	"debug/macho"
	"debug/pe"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"strings"
	"sync"
)

// verdict is what the header check found about a file that passed it.
type verdict struct {
	// format is "elf", "macho", "pe" or "script".
	format string
	// interp is an ELF binary's program interpreter (PT_INTERP), or
	// empty; checkInterp checks that file.
	interp string
}

// checkFormat identifies the file by its first bytes and checks that it is
// an executable for goos/goarch.
func checkFormat(f *os.File, goos, goarch string) (verdict, error) {
	// One read serves the format's magic and, for the usual ELF binary,
	// its header, program headers and interpreter path, which sit in the
	// first page.
	buf := headBufs.Get().(*[elfHeadSize]byte)
	defer headBufs.Put(buf)
	head := buf[:]
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return verdict{}, fmt.Errorf("read header: %w", err)
	}
	head = head[:n]
	magic := head[:min(n, 4)]
	switch {
	case n == 0:
		return verdict{}, errors.New("file is empty")
	case bytes.HasPrefix(magic, []byte(elf.ELFMAG)):
		interp, err := checkELF(f, head, goos, goarch)
		return verdict{format: "elf", interp: interp}, err
	case isMachO(magic):
		return verdict{format: "macho"}, checkMachO(f, goos, goarch)
	case bytes.HasPrefix(magic, []byte("MZ")):
		return verdict{format: "pe"}, checkPE(f, goos, goarch)
	case bytes.HasPrefix(magic, []byte("#!")):
		return verdict{format: "script"}, checkScript(f, goos)
	default:
		return verdict{}, fmt.Errorf("unknown executable format (starts with %q), want ELF, Mach-O, PE or a #! script", magic)
	}
}

type elfArch struct {
	machine elf.Machine
	class   elf.Class
	order   binary.ByteOrder
}

var elfArches = map[string]elfArch{
	"386":      {elf.EM_386, elf.ELFCLASS32, binary.LittleEndian},
	"amd64":    {elf.EM_X86_64, elf.ELFCLASS64, binary.LittleEndian},
	"arm":      {elf.EM_ARM, elf.ELFCLASS32, binary.LittleEndian},
	"arm64":    {elf.EM_AARCH64, elf.ELFCLASS64, binary.LittleEndian},
	"loong64":  {elf.EM_LOONGARCH, elf.ELFCLASS64, binary.LittleEndian},
	"mips":     {elf.EM_MIPS, elf.ELFCLASS32, binary.BigEndian},
	"mipsle":   {elf.EM_MIPS, elf.ELFCLASS32, binary.LittleEndian},
	"mips64":   {elf.EM_MIPS, elf.ELFCLASS64, binary.BigEndian},
	"mips64le": {elf.EM_MIPS, elf.ELFCLASS64, binary.LittleEndian},
	"ppc64":    {elf.EM_PPC64, elf.ELFCLASS64, binary.BigEndian},
	"ppc64le":  {elf.EM_PPC64, elf.ELFCLASS64, binary.LittleEndian},
	"riscv64":  {elf.EM_RISCV, elf.ELFCLASS64, binary.LittleEndian},
	"s390x":    {elf.EM_S390, elf.ELFCLASS64, binary.BigEndian},
}

// elfOSABI is the ELF OS/ABI byte each Unix writes; ELFOSABI_NONE (System
// V) is accepted everywhere, since most toolchains write it.
var elfOSABI = map[string]elf.OSABI{
	"linux":     elf.ELFOSABI_LINUX,
	"android":   elf.ELFOSABI_LINUX,
	"freebsd":   elf.ELFOSABI_FREEBSD,
	"netbsd":    elf.ELFOSABI_NETBSD,
	"openbsd":   elf.ELFOSABI_OPENBSD,
	"solaris":   elf.ELFOSABI_SOLARIS,
	"illumos":   elf.ELFOSABI_SOLARIS,
	"dragonfly": elf.ELFOSABI_NONE,
}

// checkELF checks an ELF file, whose first bytes are head, and returns its
// program interpreter (PT_INTERP; empty for a static binary).
func checkELF(f io.ReaderAt, head []byte, goos, goarch string) (string, error) {
	h, err := readELF(f, head)
	if err != nil {
		return "", fmt.Errorf("malformed ELF: %w", err)
	}
	what := func() string {
		return "ELF " + elfClassName(h.class) + " " + orderName(h.order) + " " + h.machine.String()
	}
	if goos == "darwin" || goos == "ios" || goos == "windows" {
		return "", fmt.Errorf("%s is not for %s/%s", what(), goos, goarch)
	}
	if h.typ != elf.ET_EXEC && h.typ != elf.ET_DYN {
		return "", fmt.Errorf("%s is not an executable (type %s)", what(), h.typ)
	}
	if abi, ok := elfOSABI[goos]; ok && h.osabi != elf.ELFOSABI_NONE && h.osabi != abi {
		return "", fmt.Errorf("%s is for OS/ABI %s, not %s/%s", what(), h.osabi, goos, goarch)
	}
	if want, ok := elfArches[goarch]; ok && (h.machine != want.machine || h.class != want.class || h.order != want.order) {
		return "", fmt.Errorf("%s is not for %s/%s (want %s %s %s)", what(), goos, goarch,
			elfClassName(want.class), orderName(want.order), want.machine)
	}
	// An architecture vmre does not know is not checked: exec will tell.
	return h.interp, nil
}

// elfHeadSize is how much of a file checkFormat reads at once: a page,
// which holds the ELF header, the program headers and the interpreter path
// of the binaries Go and C toolchains write.
const elfHeadSize = 4096

// headBufs holds checkFormat's buffers: a page at every launch is garbage
// the collector would otherwise mark and sweep. Nothing checkFormat
// returns refers to the buffer (the interpreter path is copied out).
var headBufs = sync.Pool{New: func() any { return new([elfHeadSize]byte) }}

// maxInterp bounds the PT_INTERP string read, as the kernel does
// (PATH_MAX).
const maxInterp = 4096

// maxProgHeaders bounds the program header table read, as the kernel's
// ELF loader does (64 KiB).
const maxProgHeaders = 64 << 10

// elfHeader is what the kernel reads of an ELF file to execute it: the
// file header and, through the program headers, the interpreter's path.
// The section headers, which exec never reads, are not looked at.
type elfHeader struct {
	class   elf.Class
	order   binary.ByteOrder
	osabi   elf.OSABI
	typ     elf.Type
	machine elf.Machine
	interp  string // PT_INTERP up to its NUL; empty without one
}

// readELF decodes the ELF header and program headers of f, whose first
// bytes are head, reading f only for what head does not hold.
func readELF(f io.ReaderAt, head []byte) (elfHeader, error) {
	if len(head) < elf.EI_NIDENT {
		return elfHeader{}, io.ErrUnexpectedEOF
	}
	h := elfHeader{class: elf.Class(head[elf.EI_CLASS]), osabi: elf.OSABI(head[elf.EI_OSABI])}
	switch d := elf.Data(head[elf.EI_DATA]); d {
	case elf.ELFDATA2LSB:
		h.order = binary.LittleEndian
	case elf.ELFDATA2MSB:
		h.order = binary.BigEndian
	default:
		return elfHeader{}, fmt.Errorf("unknown data encoding %s", d)
	}
	if v := elf.Version(head[elf.EI_VERSION]); v != elf.EV_CURRENT {
		return elfHeader{}, fmt.Errorf("unknown version %s", v)
	}
	var phoff uint64
	var phentsize, phnum, progSize int
	switch h.class {
	case elf.ELFCLASS32:
		var hdr elf.Header32
		if _, err := binary.Decode(head, h.order, &hdr); err != nil {
			return elfHeader{}, io.ErrUnexpectedEOF
		}
		h.typ, h.machine = elf.Type(hdr.Type), elf.Machine(hdr.Machine)
		phoff, phentsize, phnum, progSize = uint64(hdr.Phoff), int(hdr.Phentsize), int(hdr.Phnum), binary.Size(elf.Prog32{})
	case elf.ELFCLASS64:
		var hdr elf.Header64
		if _, err := binary.Decode(head, h.order, &hdr); err != nil {
			return elfHeader{}, io.ErrUnexpectedEOF
		}
		h.typ, h.machine = elf.Type(hdr.Type), elf.Machine(hdr.Machine)
		phoff, phentsize, phnum, progSize = hdr.Phoff, int(hdr.Phentsize), int(hdr.Phnum), binary.Size(elf.Prog64{})
	default:
		return elfHeader{}, fmt.Errorf("unknown class %s", h.class)
	}
	if phnum == 0 {
		return h, nil
	}
	if phentsize < progSize || phnum*phentsize > maxProgHeaders {
		return elfHeader{}, fmt.Errorf("bad program header table (%d entries of %d bytes)", phnum, phentsize)
	}
	progs, err := readRange(f, head, phoff, uint64(phnum*phentsize))
	if err != nil {
		return elfHeader{}, fmt.Errorf("read program headers: %w", err)
	}
	for i := range phnum {
		var typ elf.ProgType
		var off, size uint64
		entry := progs[i*phentsize:]
		if h.class == elf.ELFCLASS32 {
			var p elf.Prog32
			_, _ = binary.Decode(entry, h.order, &p) // progSize bytes are there
			typ, off, size = elf.ProgType(p.Type), uint64(p.Off), uint64(p.Filesz)
		} else {
			var p elf.Prog64
			_, _ = binary.Decode(entry, h.order, &p)
			typ, off, size = elf.ProgType(p.Type), p.Off, p.Filesz
		}
		if typ != elf.PT_INTERP {
			continue
		}
		b, err := readRange(f, head, off, min(size, maxInterp))
		if err != nil {
			return elfHeader{}, fmt.Errorf("read interpreter: %w", err)
		}
		if i := bytes.IndexByte(b, 0); i >= 0 {
			b = b[:i]
		}
		h.interp = string(b)
		break
	}
	return h, nil
}

// readRange returns size bytes at off: from head, the file's first bytes,
// when it holds them, else read from f.
func readRange(f io.ReaderAt, head []byte, off, size uint64) ([]byte, error) {
	if off <= uint64(len(head)) && size <= uint64(len(head))-off {
		return head[off : off+size], nil
	}
	if off > math.MaxInt64 {
		return nil, io.ErrUnexpectedEOF
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, int64(off)); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b, nil
}

// checkInterp checks that an ELF binary's interpreter (the dynamic
// loader, such as /lib64/ld-linux-x86-64.so.2) exists and is executable:
// without it, exec fails with a bare "no such file or directory" that
// names the binary, which does exist. A relative path, which the kernel
// resolves against the working directory, is left to exec.
func checkInterp(interp string) error {
	err := checkInterpFile("ELF interpreter", interp)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("ELF interpreter %s not found", interp)
	}
	return err
}

// checkInterpFile checks that an interpreter (what: "ELF interpreter",
// "#! interpreter") given by an absolute path is a regular file with an
// execute bit. A relative path is left to exec.
func checkInterpFile(what, interp string) error {
	if !strings.HasPrefix(interp, "/") {
		return nil
	}
	info, err := os.Stat(interp)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s %s is not an executable file", what, interp)
	}
	return nil
}

func elfClassName(c elf.Class) string {
	switch c {
	case elf.ELFCLASS32:
		return "32-bit"
	case elf.ELFCLASS64:
		return "64-bit"
	default:
		return c.String()
	}
}

func orderName(o binary.ByteOrder) string {
	if o == binary.BigEndian {
		return "big-endian"
	}
	return "little-endian"
}

func isMachO(head []byte) bool {
	if len(head) < 4 {
		return false
	}
	le, be := binary.LittleEndian.Uint32(head), binary.BigEndian.Uint32(head)
	for _, m := range []uint32{macho.Magic32, macho.Magic64} {
		if le == m || be == m {
			return true
		}
	}
	return be == macho.MagicFat
}

var machoCPUs = map[string]macho.Cpu{
	"386":   macho.Cpu386,
	"amd64": macho.CpuAmd64,
	"arm":   macho.CpuArm,
	"arm64": macho.CpuArm64,
}

func checkMachO(f *os.File, goos, goarch string) error {
	var cpus []macho.Cpu
	var types []macho.Type
	if fat, err := macho.NewFatFile(f); err == nil {
		defer fat.Close()
		for _, a := range fat.Arches {
			cpus = append(cpus, a.Cpu)
			types = append(types, a.Type)
		}
	} else {
		mf, err := macho.NewFile(f)
		if err != nil {
			return fmt.Errorf("malformed Mach-O: %w", err)
		}
		defer mf.Close()
		cpus, types = []macho.Cpu{mf.Cpu}, []macho.Type{mf.Type}
	}
	what := fmt.Sprintf("Mach-O %v", cpus)
	if goos != "darwin" && goos != "ios" {
		return fmt.Errorf("%s is not for %s/%s", what, goos, goarch)
	}
	want, known := machoCPUs[goarch]
	for i, c := range cpus {
		if types[i] == macho.TypeExec && (!known || c == want) {
			return nil
		}
	}
	return fmt.Errorf("%s (type %v) has no executable for %s/%s", what, types, goos, goarch)
}

var peMachines = map[string]uint16{
	"386":   pe.IMAGE_FILE_MACHINE_I386,
	"amd64": pe.IMAGE_FILE_MACHINE_AMD64,
	"arm":   pe.IMAGE_FILE_MACHINE_ARMNT,
	"arm64": pe.IMAGE_FILE_MACHINE_ARM64,
}

func checkPE(f *os.File, goos, goarch string) error {
	pf, err := pe.NewFile(f)
	if err != nil {
		return fmt.Errorf("malformed PE: %w", err)
	}
	defer pf.Close()
	what := fmt.Sprintf("PE machine %#x", pf.Machine)
	if goos != "windows" {
		return fmt.Errorf("%s is not for %s/%s", what, goos, goarch)
	}
	if pf.Characteristics&pe.IMAGE_FILE_EXECUTABLE_IMAGE == 0 || pf.Characteristics&pe.IMAGE_FILE_DLL != 0 {
		return fmt.Errorf("%s is not an executable image (characteristics %#x)", what, pf.Characteristics)
	}
	if want, ok := peMachines[goarch]; ok && pf.Machine != want {
		return fmt.Errorf("%s is not for %s/%s (want %#x)", what, goos, goarch, want)
	}
	return nil
}

// maxShebang bounds the "#!" line the kernel reads (BINPRM_BUF_SIZE is 256
// on Linux).
const maxShebang = 256

// checkScript accepts a "#!" script on Unix if its interpreter, when given
// as an absolute path, exists and is executable: a script whose interpreter
// is missing fails at exec with a confusing "no such file or directory".
// A "#!" line ending in "\r\n" is refused for the same reason: the kernel
// keeps the "\r", so it looks for "/bin/sh\r" (or passes "-e\r" on).
func checkScript(f *os.File, goos string) error {
	return checkScriptDepth(f, goos, 1)
}

// maxScriptDepth is how many "#!" scripts deep Linux follows interpreters
// (BINPRM_MAX_RECURSION is 4) before exec fails with ELOOP.
const maxScriptDepth = 4

// checkScriptDepth is checkScript for a script depth levels into a chain of
// interpreters. An interpreter that is itself a script is checked the same
// way: the kernel reports any fault in its "#!" line as the plugin's own
// "no such file or directory".
func checkScriptDepth(f *os.File, goos string, depth int) error {
	if goos == "windows" {
		return errors.New("#! scripts do not run on windows")
	}
	line, err := bufio.NewReaderSize(io.NewSectionReader(f, 0, maxShebang), maxShebang).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return fmt.Errorf("read #! line: %w", err)
	}
	// Parsed as the kernel does: only spaces and tabs separate, so a "\r"
	// stays in the interpreter's name or in its one argument.
	line = strings.TrimRight(strings.TrimSuffix(strings.TrimPrefix(line, "#!"), "\n"), " \t")
	line = strings.TrimLeft(line, " \t")
	if line == "" {
		return errors.New("#! line names no interpreter")
	}
	interp, arg := line, ""
	if i := strings.IndexAny(line, " \t"); i >= 0 {
		interp, arg = line[:i], strings.TrimLeft(line[i:], " \t")
	}
	if strings.HasSuffix(line, "\r") {
		what, name := "interpreter", interp
		if arg != "" {
			what, name = "argument", arg
		}
		return fmt.Errorf("#! %s %q ends in a carriage return: the script has CRLF (Windows) line endings, which the kernel does not strip; convert them to LF", what, name)
	}
	// A relative interpreter is resolved by the kernel against the
	// working directory.
	if err := checkInterpFile("#! interpreter", interp); err != nil || !strings.HasPrefix(interp, "/") {
		return err
	}
	return checkNestedScript(interp, goos, depth)
}

// checkNestedScript checks interp, the absolute path of a script's
// interpreter, if it is itself a "#!" script.
func checkNestedScript(interp, goos string, depth int) error {
	f, err := os.Open(interp)
	if err != nil {
		return fmt.Errorf("#! interpreter: %w", err)
	}
	defer f.Close()
	head := make([]byte, 2)
	if _, err := io.ReadFull(f, head); err != nil || string(head) != "#!" {
		return nil // not a script: its own format is exec's business
	}
	if depth >= maxScriptDepth {
		return fmt.Errorf("#! interpreter %s is a script nested more than %d deep, which the kernel refuses", interp, maxScriptDepth)
	}
	if err := checkScriptDepth(f, goos, depth+1); err != nil {
		return fmt.Errorf("#! interpreter %s is itself a script: %w", interp, err)
	}
	return nil
}
