// Package mapped maps files into memory read-only, so that a large message
// on disk can be parsed or converted as one []byte without being read onto
// the heap: its pages belong to the page cache, which can drop them.
package mapped
