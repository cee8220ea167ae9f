//go:build !linux

package sqlite

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// touchStamp appends an octet to the stamp at path, or replaces a full one.
// (Linux reaches it through directory handles; here plain paths, not
// following a link at the end.)
func touchStamp(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte{'.'})
	fi, serr := f.Stat()
	err = errors.Join(err, serr, f.Close())
	if err != nil || fi.Size() < stampMax {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = tmp.Write([]byte{'.'})
	if err = errors.Join(err, tmp.Chmod(0o640), tmp.Close()); err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// inode is not used here: the stamp's size and mtime tell its versions.
func inode(os.FileInfo) uint64 { return 0 }

// watchStamps is not available here: lookups stat the stamp.
func watchStamps(dir string, names []string, changed func(i int), failed func()) (io.Closer, error) {
	return nil, errors.ErrUnsupported
}

// checkDatabaseFiles is Linux's alone (see dircache_linux.go).
func checkDatabaseFiles(dir, db string) error { return nil }
