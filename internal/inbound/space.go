package inbound

import (
	"fmt"

	"golang.org/x/sys/unix"

	"mailroom/internal/smtp"
)

// errStorageLow refuses mail while the data directory's free space is below
// the reserve (RFC 3463 4.3.1), before the disk is actually full, so that
// the store, its WAL and the CLI keep room to work (Postfix's
// queue_minfree).
var errStorageLow = &smtp.Reply{Code: 452, Enhanced: "4.3.1", Text: "Insufficient system storage, try again later"}

// freeSpace returns the octets an unprivileged process may still write
// under dir.
func freeSpace(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// checkSpace refuses a message of about size octets that would leave less
// than the reserve free, and logs each refusal with the free space.
func (b *Backend) checkSpace(size int64, client string) error {
	cfg := b.cfg.Load()
	if cfg.MinFreeSpace <= 0 || cfg.DataDir == "" {
		return nil
	}
	free, err := freeSpace(cfg.DataDir)
	if err != nil {
		b.log.Warn("cannot check the free space; accepting", "err", err)
		return nil
	}
	if free-size < cfg.MinFreeSpace {
		b.log.Warn("mail refused: free space below the reserve", "client", client, "free_bytes", free, "message_bytes", size, "min_free_space", cfg.MinFreeSpace, "data_dir", cfg.DataDir)
		return errStorageLow
	}
	return nil
}
