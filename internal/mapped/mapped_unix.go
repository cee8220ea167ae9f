//go:build unix

package mapped

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// File maps f read-only and returns the mapping from f's offset to its
// end, and the function that removes it. Nothing left to read gives an
// empty slice and nothing to remove.
func File(f *os.File) ([]byte, func(), error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, nil, err
	}
	size := fi.Size()
	if size <= off {
		return nil, func() {}, nil
	}
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("%s: %d octets is too large to map", f.Name(), size)
	}
	m, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", f.Name(), err)
	}
	return m[off:], func() { syscall.Munmap(m) }, nil
}
