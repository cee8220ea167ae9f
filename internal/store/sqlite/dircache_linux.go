package sqlite

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// trustedFile checks that f, opened in the data directory dataDir, is a
// regular file owned by this process's user or by the directory's owner.
func trustedFile(f *os.File, dataDir string) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	di, err := os.Stat(dataDir)
	if err != nil {
		return err
	}
	st, ok1 := fi.Sys().(*syscall.Stat_t)
	dt, ok2 := di.Sys().(*syscall.Stat_t)
	switch {
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", f.Name())
	case ok1 && ok2 && st.Uid != uint32(os.Geteuid()) && st.Uid != dt.Uid:
		return fmt.Errorf("%s belongs to user %d, neither this process's nor the data directory's owner", f.Name(), st.Uid)
	}
	return nil
}

// inode is a file's inode number.
func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// watchStamps calls changed(i) after the stamp names[i] in dir (the
// stamps' own directory, where nothing else is written) changed, or was
// replaced (stampEvent), through inotify: lookups then need no system call
// to know that their entries are current. Events lost to a full inotify
// queue count as a change of every stamp. It calls failed instead if the
// watch stops working; Close ends it.
func watchStamps(dir string, names []string, changed func(i int), failed func()) (io.Closer, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_MODIFY|unix.IN_CREATE|unix.IN_MOVED_TO|unix.IN_DELETE|unix.IN_ATTRIB); err != nil {
		unix.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "inotify "+dir) // non-blocking: read through the poller
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if err != nil {
				failed()
				return
			}
			seen := make([]bool, len(names))
			for p := buf[:n]; len(p) >= unix.SizeofInotifyEvent; {
				mask := binary.NativeEndian.Uint32(p[4:8])
				if mask&unix.IN_IGNORED != 0 { // the directory is gone: back to stat
					failed()
					f.Close()
					return
				}
				end := min(len(p), unix.SizeofInotifyEvent+int(binary.NativeEndian.Uint32(p[12:16])))
				ev := string(bytes.TrimRight(p[unix.SizeofInotifyEvent:end], "\x00"))
				for i, name := range names {
					if mask&unix.IN_Q_OVERFLOW != 0 || stampEvent(name, ev) {
						seen[i] = true
					}
				}
				p = p[end:]
			}
			for i, ok := range seen {
				if ok {
					changed(i)
				}
			}
		}
	}()
	return f, nil
}
