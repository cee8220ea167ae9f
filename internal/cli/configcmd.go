package cli

import (
	"fmt"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"mailroom/internal/daemon"
)

func (a *app) configCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check the configuration"}
	var quiet bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Check a configuration file (--config FILE) and print the configuration in effect, defaults included",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := a.config()
			if err != nil {
				return fmt.Errorf("%w\nfix the line above, then run 'mailroom config check --config FILE' again", err)
			}
			if !quiet {
				out, err := toml.Marshal(cfg)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "# The configuration in effect (%s and the defaults)\n%s", a.source(), out)
			}
			for _, w := range daemon.CertificateWarnings(cfg) {
				fmt.Fprintf(a.stderr, "mailroom: warning: %s\n", w)
			}
			fmt.Fprintf(a.stderr, "mailroom: the configuration is valid (%s)\n", a.source())
			return nil
		},
	}
	check.Flags().BoolVarP(&quiet, "quiet", "q", false, "only check; print nothing but errors")
	cmd.AddCommand(check)
	return cmd
}

// source names where the configuration comes from.
func (a *app) source() string {
	if a.configFile == "" {
		return "development defaults, no --config"
	}
	return a.configFile
}
