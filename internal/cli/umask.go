package cli

import "golang.org/x/sys/unix"

// restrictUmask makes every file and directory Mailroom creates (the
// database with password hashes and mail, message files, spools, stamps)
// unreadable to other users, whatever the umask it was started with and
// whatever the mode of a data directory made beforehand: files 0640 at most,
// directories 0750.
func restrictUmask() {
	old := unix.Umask(0o027)
	unix.Umask(old | 0o027)
}
