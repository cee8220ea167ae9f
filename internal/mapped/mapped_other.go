//go:build !unix

package mapped

import (
	"io"
	"os"
)

// File reads the rest of f where mapping it is not supported.
func File(f *os.File) ([]byte, func(), error) {
	b, err := io.ReadAll(f)
	return b, func() {}, err
}
