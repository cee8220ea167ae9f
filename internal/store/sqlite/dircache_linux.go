package sqlite

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// watchStamps calls changed after anything happened in dir (the stamps'
// own directory, where nothing else is written), through inotify: lookups
// then need no system call to know that their entries are current. It
// calls failed instead if the watch stops working; Close ends it.
func watchStamps(dir string, changed, failed func()) (io.Closer, error) {
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
			if _, err := f.Read(buf); err != nil {
				failed()
				return
			}
			changed() // whatever the events: a queue overflow is a change too
		}
	}()
	return f, nil
}
