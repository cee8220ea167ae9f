// Package cli is Mailroom's command line: "mailroom serve" and the
// administration commands for domains, users, aliases and mailboxes. The
// administration commands open the store directly, which is safe while the
// server runs.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"mailroom/internal/config"
	"mailroom/internal/daemon"
	"mailroom/internal/logging"
	"mailroom/internal/store"
	"mailroom/internal/store/storeopen"
)

// app holds the global flags and the streams of one invocation.
type app struct {
	configFile string
	dataDir    string
	logFormat  string
	logLevel   string
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

// Main runs the command line and returns the exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	restrictUmask()
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		fmt.Fprintf(stderr, "mailroom: %s\n", err)
		return 1
	}
	return 0
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "mailroom",
		Short:         "Mailroom: a mail server in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version(),
	}
	root.SetVersionTemplate("mailroom {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&a.configFile, "config", "", "configuration file (TOML); without it, development defaults")
	pf.StringVar(&a.dataDir, "data", "", "data directory (overrides data_dir)")
	pf.StringVar(&a.logFormat, "log-format", "", "log format: text or json (overrides log.format)")
	pf.StringVar(&a.logLevel, "log-level", "", "log level: debug, info, warn or error (overrides log.level)")
	root.AddCommand(a.serveCommand(), a.domainCommand(), a.userCommand(), a.aliasCommand(),
		a.mailboxCommand(), a.exportCommand(), a.queueCommand(), a.messagesCommand(), a.eventsCommand(), a.apiKeyCommand(), a.webhookCommand(), a.suppressionCommand(), a.versionCommand(),
		a.configCommand(), a.backupCommand(), a.restoreCommand(), a.dkimCommand(), a.checkCommand(), a.probeCommand(), a.dmarcCommand(), a.storeCommand())
	requireSubcommands(root)
	return root
}

// requireSubcommands makes a command group given an unknown subcommand
// ("mailroom user send-as alice@x y") fail with a hint, where cobra would
// print the group's help and succeed as if something had been done.
func requireSubcommands(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		requireSubcommands(c)
	}
	if cmd.HasSubCommands() && !cmd.Runnable() && cmd.HasParent() {
		cmd.Args = cobra.ArbitraryArgs
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			return fmt.Errorf("%q is not a command of %q; run '%s --help' to see them", args[0], cmd.CommandPath(), cmd.CommandPath())
		}
	}
}

// Version is set at build time with -ldflags "-X mailroom/internal/cli.Version=...".
var Version = "dev"

// version is Version with the commit the binary was built from, when the
// build recorded it: "dev (commit 0352c60a1b2c, 2026-12-06T04:57:20Z, modified)".
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Version
	}
	vcs := map[string]string{}
	for _, s := range info.Settings {
		vcs[s.Key] = s.Value
	}
	rev := vcs["vcs.revision"]
	if rev == "" {
		return Version + " (" + info.GoVersion + ")"
	}
	out := Version + " (commit " + rev[:min(12, len(rev))]
	if t := vcs["vcs.time"]; t != "" {
		out += ", " + t
	}
	if vcs["vcs.modified"] == "true" {
		out += ", modified"
	}
	return out + ", " + info.GoVersion + ")"
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{Use: "version", Short: "Print the version (also: mailroom --version)", Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(a.stdout, "mailroom", version())
			return nil
		}}
}

// config loads the configuration (or the defaults) with flag overrides.
func (a *app) config() (*config.Config, error) {
	cfg := config.Default()
	if a.configFile != "" {
		var err error
		if cfg, err = config.Load(a.configFile); err != nil {
			return nil, err
		}
	}
	a.override(cfg)
	return cfg, nil
}

func (a *app) override(cfg *config.Config) {
	if a.dataDir != "" {
		cfg.DataDir = a.dataDir
	}
	if a.logFormat != "" {
		cfg.Log.Format = a.logFormat
	}
	if a.logLevel != "" {
		cfg.Log.Level = a.logLevel
	}
}

func (a *app) serveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the mail server (development defaults without --config)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.config()
			if err != nil {
				return err
			}
			log, level, err := logging.New(a.stderr, cfg.Log.Format, cfg.Log.Level)
			if err != nil {
				return err
			}
			return daemon.Run(cmd.Context(), daemon.Options{
				ConfigFile: a.configFile,
				Override:   a.override,
				Log:        log,
				Level:      level,
				Stdout:     a.stdout,
			})
		},
	}
}

// openStore opens the store named by the configuration.
func (a *app) openStore(ctx context.Context) (store.Store, error) {
	cfg, err := a.config()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(cfg.DataDir); err != nil && a.configFile == "" && a.dataDir == "" {
		return nil, fmt.Errorf("no data directory at %s: start the server once (mailroom serve) or give --data DIR or --config FILE", cfg.DataDir)
	}
	return storeopen.OpenTool(ctx, cfg)
}

// withStore runs fn with an open store.
func (a *app) withStore(cmd *cobra.Command, fn func(ctx context.Context, st store.Store) error) error {
	ctx := cmd.Context()
	st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(ctx, st)
}

// printJSON writes v as indented JSON; nil slices become [].
func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printList prints what a list command found: the items as JSON (none as
// []), or a table with a row per item.
func printList[T any](a *app, asJSON bool, items []T, header string, row func(T) []string) error {
	if asJSON {
		return a.printJSON(nonNil(items))
	}
	rows := make([][]string, len(items))
	for i, it := range items {
		rows[i] = row(it)
	}
	a.table(header, rows)
	return nil
}

// table writes rows aligned in columns. Cells hold text from outside (a
// Subject, a next hop's reply): control and bidi characters in them are
// shown as U+FFFD, so that none can drive the operator's terminal.
func (a *app) table(header string, rows [][]string) {
	tw := tabwriter.NewWriter(a.stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = printable(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// printable replaces what must not reach a terminal: C0 and C1 controls
// (ESC starts the sequences that clear screens and retitle windows), DEL,
// and the bidi controls that reorder what follows (Trojan Source).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0,
			r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
			return '\ufffd'
		}
		return r
	}, s)
}

// explain turns store errors into sentences that say what to do next.
func explain(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("%s: %v: check the spelling, or list what exists with the matching 'list' command", what, err)
	case errors.Is(err, store.ErrExists):
		return fmt.Errorf("%s: %v", what, err)
	case errors.Is(err, store.ErrInUse):
		return fmt.Errorf("%s: %v: delete those first", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
