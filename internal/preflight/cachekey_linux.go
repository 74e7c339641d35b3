package preflight

import (
	"io/fs"
	"syscall"
)

func fileKey(info fs.FileInfo) (formatKey, bool) {
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return formatKey{}, false
	}
	return formatKey{
		dev:       uint64(st.Dev),
		ino:       uint64(st.Ino),
		size:      uint64(st.Size),
		mtimeSec:  int64(st.Mtim.Sec),
		mtimeNsec: int64(st.Mtim.Nsec),
		ctimeSec:  int64(st.Ctim.Sec),
		ctimeNsec: int64(st.Ctim.Nsec),
	}, true
}
