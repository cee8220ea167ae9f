package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"mailroom/internal/config"
	"mailroom/internal/daemon"
	"mailroom/internal/password"
	"mailroom/internal/store"
)

// importRow is one user to add: from a CSV line "address,password,quota"
// or a JSON object {"address": ..., "password": ..., "quota": ...}.
type importRow struct {
	Address  string `json:"address"`
	Password string `json:"password"`
	Quota    string `json:"quota"`

	line      int // where it was read, for errors
	quota     config.Size
	generated bool
	secrets   store.Secrets
}

func (a *app) userImportCommand() *cobra.Command {
	return &cobra.Command{Use: "import FILE",
		Short: "Add many users from a CSV or JSON file; users that exist are skipped, so it is safe to run again",
		Long: `Reads FILE ("-" for standard input) as JSON, an array of {"address", "password", "quota"}, when it
starts with "[", else as CSV with the columns address,password,quota (a first line "address,..." is a header).
An empty password gets a generated one, printed once at the end; a password given must pass the same strength
check as 'user add'; quota is optional ("2GiB"). Every line is checked before anything is added: with any
error, nothing is. Passwords are hashed on every core at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rows, err := a.readImport(args[0])
			if err != nil {
				return err
			}
			cfg, err := a.config()
			if err != nil {
				return err
			}
			return a.withStore(cmd, func(ctx context.Context, st store.Store) error {
				todo, skipped, err := a.checkImport(ctx, st, args[0], rows)
				if err != nil {
					return err
				}
				if err := hashAll(todo, cfg.Submission.CRAMMD5, a.progressBar()); err != nil {
					return err
				}
				added := 0
				for _, r := range todo {
					_, err := st.AddUser(ctx, store.User{Address: r.Address, PasswordHash: r.secrets.Hash, SCRAMSHA256: r.secrets.SCRAMSHA256,
						CRAMMD5: r.secrets.CRAMMD5, QuotaBytes: int64(r.quota)})
					if err != nil && !errors.Is(err, store.ErrExists) { // made meanwhile: as good as skipped
						return fmt.Errorf("%s:%d: add %s: %w (the %d users before it were added; run the import again to go on)", args[0], r.line, r.Address, err, added)
					}
					added++
				}
				fmt.Fprintf(a.stdout, "imported %d users, skipped %d that exist\n", added, skipped)
				printed := false
				for _, r := range todo {
					if r.generated {
						if !printed {
							fmt.Fprintln(a.stdout, "generated passwords (shown once):")
							printed = true
						}
						fmt.Fprintf(a.stdout, "%s\t%s\n", r.Address, r.Password)
					}
				}
				return nil
			})
		}}
}

// readImport parses the file's rows, without checking them.
func (a *app) readImport(name string) ([]*importRow, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(a.stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if trimmed := bytes.TrimSpace(data); len(trimmed) > 0 && trimmed[0] == '[' {
		var rows []*importRow
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rows); err != nil {
			return nil, fmt.Errorf("%s: %w: write a JSON array of {\"address\": ..., \"password\": ..., \"quota\": ...}", name, err)
		}
		for i, r := range rows {
			if r == nil {
				return nil, fmt.Errorf("%s: element %d is null", name, i+1)
			}
			r.line = i + 1
		}
		return rows, nil
	}
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	var rows []*importRow
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := cr.FieldPos(0)
		if len(rows) == 0 && strings.EqualFold(strings.TrimSpace(rec[0]), "address") {
			continue // a header
		}
		if len(rec) > 3 {
			return nil, fmt.Errorf("%s:%d: %d columns: write address,password,quota", name, line, len(rec))
		}
		rec = append(rec, "", "")
		rows = append(rows, &importRow{Address: strings.TrimSpace(rec[0]), Password: rec[1], Quota: strings.TrimSpace(rec[2]), line: line})
	}
}

// checkImport checks every row (address, domain, password strength, quota,
// duplicates) and reports all problems at once; rows whose user exists are
// left out. Nothing is added when anything is wrong.
func (a *app) checkImport(ctx context.Context, st store.Store, name string, rows []*importRow) (todo []*importRow, skipped int, err error) {
	var problems []string
	seen := map[string]int{}
	domains := map[string]bool{}
	for _, r := range rows {
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Sprintf("%s:%d: %s", name, r.line, fmt.Sprintf(format, args...)))
		}
		addr, err := normalizeAddress(r.Address)
		if err != nil {
			bad("%v", err)
			continue
		}
		r.Address = addr
		if first, dup := seen[addr]; dup {
			bad("%s is also on line %d", addr, first)
			continue
		}
		seen[addr] = r.line
		_, domain, _ := strings.Cut(addr, "@")
		if _, ok := domains[domain]; !ok {
			_, err := st.Domain(ctx, domain)
			domains[domain] = err == nil
		}
		if !domains[domain] {
			bad("%s is not a local domain: add it first with 'mailroom domain add %s'", domain, domain)
			continue
		}
		if r.Quota != "" {
			if err := r.quota.UnmarshalText([]byte(r.Quota)); err != nil {
				bad("quota: %v", err)
				continue
			}
		}
		if _, err := st.User(ctx, addr); err == nil {
			skipped++
			continue
		}
		if r.Password == "" {
			r.Password, r.generated = daemon.RandomPassword(), true
		} else if err := password.CheckStrength(r.Password, addr); err != nil {
			bad("%s: %v", addr, strings.Replace(err.Error(), "with --generate", "by leaving the password empty", 1))
			continue
		}
		todo = append(todo, r)
	}
	if len(problems) > 0 {
		return nil, 0, fmt.Errorf("%s\nnothing was imported: fix the lines above and run the import again", strings.Join(problems, "\n"))
	}
	return todo, skipped, nil
}

// hashAll derives every row's secrets, on as many cores as there are (each
// argon2id hash takes 64 MiB, so at most 8 at once).
func hashAll(rows []*importRow, withCRAM bool, progress func(done, total int)) error {
	work := make(chan *importRow)
	var mu sync.Mutex
	var firstErr error
	done := 0
	var wg sync.WaitGroup
	for range min(runtime.NumCPU(), 8) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				hash, scramV, cram, err := password.Derive(r.Password, withCRAM)
				mu.Lock()
				r.secrets = store.Secrets{Hash: hash, SCRAMSHA256: scramV, CRAMMD5: cram}
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("hash the password of %s: %w", r.Address, err)
				}
				done++
				if progress != nil {
					progress(done, len(rows))
				}
				mu.Unlock()
			}
		}()
	}
	for _, r := range rows {
		work <- r
	}
	close(work)
	wg.Wait()
	return firstErr
}
