//go:build !linux

package sqlite

import (
	"errors"
	"io"
	"os"
)

// trustedFile checks only that f is a regular file here.
func trustedFile(f *os.File, dataDir string) error {
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New(f.Name() + " is not a regular file")
	}
	return err
}

// inode is not used here: the stamp's size and mtime tell its versions.
func inode(os.FileInfo) uint64 { return 0 }

// watchStamps is not available here: lookups stat the stamp.
func watchStamps(dir string, names []string, changed func(i int), failed func()) (io.Closer, error) {
	return nil, errors.ErrUnsupported
}
