//go:build race

package sqlitetest

const raceEnabled = true
