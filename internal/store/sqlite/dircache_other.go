//go:build !linux

package sqlite

import (
	"errors"
	"io"
)

// watchStamps is not available here: lookups stat the stamp.
func watchStamps(dir string, changed, failed func()) (io.Closer, error) {
	return nil, errors.ErrUnsupported
}
