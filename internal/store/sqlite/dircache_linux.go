package sqlite

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// touchStamp appends an octet to the stamp at path, or replaces a full one.
// A CLI run as root must not write where whoever owns the data directory
// points it: the stamps directory is opened without following a link, the
// stamp within it by its handle (openat) without following one either, and
// only a regular file with one link, owned by the data directory's owner
// (or by this user, when it is not root), is written.
func touchStamp(path string) error {
	dir, name := filepath.Dir(path), filepath.Base(path)
	owner, err := ownerOf(filepath.Dir(dir))
	if err != nil {
		return err
	}
	dfd, err := unix.Open(dir, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", dir, err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Openat(dfd, name, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		f.Close()
		return err
	}
	if err := trusted(st, owner, path, true); err != nil {
		f.Close()
		return err
	}
	_, err = f.Write([]byte{'.'})
	err = errors.Join(err, f.Close())
	if err != nil || st.Size+1 < stampMax {
		return err
	}
	// A name of its own: two goroutines (or processes) may replace the
	// stamp at once.
	var rnd [8]byte
	rand.Read(rnd[:])
	tmp := name + ".tmp" + hex.EncodeToString(rnd[:])
	tfd, err := unix.Openat(dfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o640)
	if err != nil {
		return fmt.Errorf("open %s: %w", filepath.Join(dir, tmp), err)
	}
	_, err = unix.Write(tfd, []byte{'.'})
	if err = errors.Join(err, unix.Close(tfd)); err == nil {
		err = unix.Renameat(dfd, tmp, dfd, name)
	}
	if err != nil {
		unix.Unlinkat(dfd, tmp, 0)
	}
	return err
}

// ownerOf returns the user owning path.
func ownerOf(path string) (uint32, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Uid, nil
}

// trusted checks a file's metadata: a regular file (with one link when
// oneLink), owned by the data directory's owner, or by this user when it is
// not root.
func trusted(st unix.Stat_t, owner uint32, path string, oneLink bool) error {
	euid := uint32(os.Geteuid())
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%s is not a regular file", path)
	case oneLink && st.Nlink != 1:
		return fmt.Errorf("%s has %d links: not written", path, st.Nlink)
	case st.Uid != owner && (euid == 0 || st.Uid != euid):
		return fmt.Errorf("%s belongs to user %d, not to the data directory's owner (%d)", path, st.Uid, owner)
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

// checkDatabaseFiles refuses a database whose files (the database, its WAL,
// its shared-memory index, a rollback journal) are links, not regular files,
// or owned by another user than the data directory's, with an error that
// says which file and what to do: SQLite opens them by path, and a root CLI
// must not write wherever the data directory's owner points it (SQLite
// itself answers such a link with only "unable to open database file"). A
// link swapped in between this check and SQLite's open is not caught;
// running the CLI as the data directory's owner closes that too.
func checkDatabaseFiles(dir, db string) error {
	owner, err := ownerOf(dir)
	if err != nil {
		return err
	}
	for _, suffix := range []string{"", "-wal", "-shm", "-journal"} {
		path := filepath.Join(dir, db+suffix)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); errors.Is(err, unix.ENOENT) {
			continue
		} else if err != nil {
			return err
		}
		// Hard links are let be (a copy made with cp -al): the kernel's
		// protected_hardlinks keeps others from linking files they do not
		// own, and the owner is checked.
		if err := trusted(st, owner, path, false); err != nil {
			return fmt.Errorf("%w; move it away if you did not put it there", err)
		}
	}
	return nil
}
