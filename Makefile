# Mailroom. `make run` starts a server on development defaults; `make test`
# installs what the tests need and runs them all.
GO ?= go
BIN := bin/mailroom
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
GOTESTSUM := gotest.tools/gotestsum@v1.13.0
FUZZTIME ?= 30s
# The version printed by "mailroom --version": the commit, when built from git.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build run test lint fuzz bench microbench stress tlsscan clean

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X mailroom/internal/cli.Version=$(VERSION)" -o $(BIN) ./cmd/mailroom

run: build
	./$(BIN) serve

# Unit tests run with the race detector; the integration tests in tests/
# build and start the static (CGO_ENABLED=0) binary and talk to it with
# real clients (Python smtplib, swaks, curl, mutt). The tests over a
# 100,000-entry queue skip under -race (it slows SQLite ~25x) and run
# once more without it.
#
# gotestsum prints each test as it ends, then the skipped (with why) and
# failed tests, and scripts/test-summary.sh closes with one line of totals.
# The black-box tests that run a second time on the PostgreSQL store (each
# server its own database): those whose outcome rests on the store (SMTP
# acceptance and kill -9, submission, the queue, IMAP, POP3, forwarding);
# not those of protocol details alone (a next hop's faults, hardening).
PG_BLACKBOX = ^Test(Relay|RelayRetry|RelayKill9.*|Kill9.*|RelayNotifySuccess|RelayIPPool|IMAP.*|POP3.*|Submission|Forwarding|Postgres.*|Mailbox.*|Python.*)$$

test: build lint
	./scripts/test-deps.sh
	$(GO) run $(GOTESTSUM) --format testname --post-run-command 'sh scripts/test-summary.sh' --raw-command -- bash -c '\
	  rc=0; \
	  $(GO) test -json -race -shuffle=on -timeout 10m ./... || rc=1; \
	  $(GO) test -json -shuffle=on -timeout 5m -run LargeQueue ./internal/store/sqlite ./internal/queue || rc=1; \
	  MAILROOM_TEST_STORE=postgres $(GO) test -json -shuffle=on -timeout 10m -run "$(PG_BLACKBOX)" -skip TestIMAPConformanceCompressed ./tests || rc=1; \
	  exit $$rc'

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Every parser's fuzz target, FUZZTIME each.
fuzz:
	$(GO) test ./internal/smtp -run '^$$' -fuzz '^FuzzParseCommand$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/smtp -run '^$$' -fuzz '^FuzzParsePath$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/smtp -run '^$$' -fuzz '^FuzzParseParams$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/smtp -run '^$$' -fuzz '^FuzzReadData$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/smtp -run '^$$' -fuzz '^FuzzChunkWriter$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/smtpserver -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/config -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/inbound -run '^$$' -fuzz '^FuzzScanHeader$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/smtpclient -run '^$$' -fuzz '^FuzzWriteDotStuffed$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/downgrade -run '^$$' -fuzz '^FuzzConvert$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/auth -run '^$$' -fuzz '^FuzzAuthenticate$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/smtpclient -run '^$$' -fuzz '^FuzzReadReply$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/arf -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/webhook -run '^$$' -fuzz '^FuzzParseInbound$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/imapwire -run '^$$' -fuzz '^FuzzReadCommand$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/imapwire -run '^$$' -fuzz '^FuzzUTF7$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/message -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/message -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/message -run '^$$' -fuzz '^FuzzSearchText$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/message -run '^$$' -fuzz '^FuzzSortKeys$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/imapserver -run '^$$' -fuzz '^FuzzContainsFold$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/imapserver -run '^$$' -fuzz '^FuzzDecodeView$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/mailauth -run '^$$' -fuzz '^FuzzSPFSyntax$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/mailauth -run '^$$' -fuzz '^FuzzAuthorDomain$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/inbound -run '^$$' -fuzz '^FuzzObscureClaims$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/dmarcreport -run '^$$' -fuzz '^FuzzFind$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/mtasts -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/srs -run '^$$' -fuzz '^FuzzReverse$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s
	$(GO) test ./internal/arc -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10s

# The side-by-side benchmarks against Postfix and Dovecot (bench/README.md):
# installs what they need, then runs bench/run.sh (as root, 45-60 minutes)
# bench/imap.sh (a few minutes) and bench/postgres.sh (the PostgreSQL store
# beside the embedded one, about 30 minutes); their settings are environment
# variables. Not part of CI.
bench:
	./scripts/test-deps.sh bench
	./bench/run.sh
	./bench/imap.sh
	./bench/postgres.sh

# Go microbenchmarks of the hot paths, with allocations.
microbench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

# The crash test at a larger scale: many concurrent senders, kill -9, check;
# then the accept rate and idle CPU with a 100,000-entry deferred queue
# against an empty one (~5 minutes; bench/results/queue-scale-*.md).
stress: build
	MAILROOM_STRESS=1 $(GO) test -run 'TestKill9' -count 3 -v -timeout 30m ./tests/
	MAILROOM_STRESS=1 $(GO) test -run 'TestQueueScale' -count 1 -v -timeout 30m ./tests/

# testssl.sh against the STARTTLS and implicit-TLS submission ports.
tlsscan:
	./scripts/tlsscan.sh

clean:
	rm -rf bin
