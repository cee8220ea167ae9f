// Command mailroom is the Mailroom mail server and its administration tool.
// Run "mailroom help" for the commands.
package main

import (
	"os"

	"mailroom/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
