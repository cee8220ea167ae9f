//go:build !linux

package sqlite

import (
	"errors"
	"io"
	"os"
)

// inode is not used here: the stamp's size and mtime tell its versions.
func inode(os.FileInfo) uint64 { return 0 }

// watchStamps is not available here: lookups stat the stamp.
func watchStamps(dir string, names []string, changed func(i int), failed func()) (io.Closer, error) {
	return nil, errors.ErrUnsupported
}
