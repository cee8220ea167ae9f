//go:build !race

package sqlitetest

const raceEnabled = false
