#!/usr/bin/env bash
# The side-by-side benchmark of issue 6: Mailroom and a loopback-only Postfix
# on this machine, one after the other (A/B/A/B), driven by Postfix's
# smtp-source. bench/README.md says what each figure means.
#
#   make bench                                         # the full run: N=20000, 3 runs (45-60 minutes)
#   N=2000 RUNS=1 IDLE_N=1000 LAT_N=200 bench/run.sh   # a smoke run (a few minutes; not figures)
#   SCENARIOS="relay" CONCS="50" SERVERS=mailroom bench/run.sh
#
# Settings (environment variables):
#   N          messages per throughput run (20000)
#   SIZE       message body bytes (10240)
#   RUNS       runs of every measurement (3)
#   SCENARIOS  any of: ceiling accept relay latency idle logins (all)
#   CONCS      smtp-source concurrencies; "10d" is 10 with connection reuse (-d) ("1 10 50 10d")
#   SERVERS    any of: mailroom postfix durable (all three); durable is the reference
#              durable server, benchkit sink -durable (accept and latency only)
#   IDLE_N     idle connections held to Mailroom (10000)
#   IDLE_N_POSTFIX  idle connections held to Postfix: one smtpd process, about 1.2 MB, each (2000)
#   LAT_N      messages per latency measurement (500); FSYNC_N: fsyncs of the disk probe (500)
#   MAX_SECS   limit for any one measurement (600)
#   STALL_SECS give up waiting for the sink when nothing arrived for this long (60)
#   BENCH_TMP  where the scratch folder goes: data folders, queues, the fsync probe (/var/tmp)
#   KEEP=1     keep the scratch folder (logs, configuration) at the end
#   SIGN=1     Mailroom DKIM-signs the relayed mail (the senders' domain is
#              its own); without it neither server signs
#   CHECKS=1   Mailroom trusts no network, so each message to a local user is
#              checked (SPF, DKIM, DMARC against the bench's DNS server), as
#              mail from outside is; for the accept and latency scenarios only
#
# Writes bench/results/bench-YYYYMMDD-HHMM.md (with -smoke before .md when
# the run is smaller than the issue asks for). Every process it starts is
# stopped when it ends, however it ends.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

N=${N:-20000}
SIZE=${SIZE:-10240}
RUNS=${RUNS:-3}
SCENARIOS=${SCENARIOS:-"ceiling accept relay latency idle logins"}
CONCS=${CONCS:-"1 10 50 10d"}
SERVERS=${SERVERS:-"mailroom postfix durable"}
IDLE_N=${IDLE_N:-10000}
IDLE_N_POSTFIX=${IDLE_N_POSTFIX:-$((IDLE_N < 2000 ? IDLE_N : 2000))}
LAT_N=${LAT_N:-500}
FSYNC_N=${FSYNC_N:-500}
MAX_SECS=${MAX_SECS:-600}
STALL_SECS=${STALL_SECS:-60}
BENCH_TMP=${BENCH_TMP:-/var/tmp}
KEEP=${KEEP:-}
SIGN=${SIGN:-}
CHECKS=${CHECKS:-}
TRUSTED='"127.0.0.0/8"'
[ -n "$CHECKS" ] && TRUSTED=

COMMAND="${SIGN:+SIGN=$SIGN }${CHECKS:+CHECKS=$CHECKS }N=$N SIZE=$SIZE RUNS=$RUNS SCENARIOS=\"$SCENARIOS\" CONCS=\"$CONCS\" SERVERS=\"$SERVERS\" IDLE_N=$IDLE_N IDLE_N_POSTFIX=$IDLE_N_POSTFIX LAT_N=$LAT_N FSYNC_N=$FSYNC_N MAX_SECS=$MAX_SECS STALL_SECS=$STALL_SECS bench/run.sh"

die() { echo "bench: $*" >&2; exit 1; }
for v in N SIZE RUNS IDLE_N IDLE_N_POSTFIX LAT_N FSYNC_N MAX_SECS STALL_SECS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v}: want a positive number"
done
for s in $SCENARIOS; do [[ $s =~ ^(ceiling|accept|relay|latency|idle|logins)$ ]] || die "unknown scenario $s"; done
for s in $SERVERS; do [[ $s =~ ^(mailroom|postfix|durable)$ ]] || die "unknown server $s"; done
for c in $CONCS; do [[ $c =~ ^[1-9][0-9]*d?$ ]] || die "concurrency $c: want a number, or a number and d"; done
[ "$(id -u)" -eq 0 ] || die "run as root: Postfix's own instance needs it (as in tests/postfix_test.go)"

SMOKE=""
if [ "$N" -lt 20000 ] || [ "$RUNS" -lt 3 ] || { [[ " $SCENARIOS " == *" idle "* ]] && [ "$IDLE_N" -lt 10000 ]; }; then
	SMOKE=yes
fi

POSTFIX=$(command -v postfix || echo /usr/sbin/postfix)
SMTP_SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
POSTCONF=$(command -v postconf || echo /usr/sbin/postconf)
[ -x "$POSTFIX" ] && [ -x "$SMTP_SOURCE" ] || die "postfix and smtp-source are missing: run scripts/test-deps.sh bench (make bench does)"
command -v python3 >/dev/null && command -v curl >/dev/null || die "python3 and curl are needed: run scripts/test-deps.sh bench"

# Idle connections need a descriptor each, in this shell's children
# (idleconn.py) and in Mailroom.
want_fds=$((IDLE_N + IDLE_N_POSTFIX + 1000))
[ "$(ulimit -Hn)" -ge "$want_fds" ] || ulimit -Hn "$want_fds" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" || true
if [[ " $SCENARIOS " == *" idle "* ]] && [ "$(ulimit -n)" -lt $((IDLE_N + 200)) ]; then
	die "ulimit -n is $(ulimit -n): IDLE_N=$IDLE_N needs more descriptors"
fi

mkdir -p "$BENCH_TMP" || die "BENCH_TMP=$BENCH_TMP"
WORK=$(mktemp -d "$BENCH_TMP/mailroom-bench.XXXXXX") || die "mktemp in $BENCH_TMP"
chmod 755 "$WORK" # Postfix's daemons (user postfix) reach their queue in it
RAW=$WORK/results.tsv
: >"$RAW"

# Processes this script started, stopped by cleanup in any case.
HELPER_PIDS=()
LOAD_PID=""
MR_PID=""
DS_PID=""
PF_CONF=""
PF_MASTER=""

cleanup() {
	trap - EXIT INT TERM
	[ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null
	declare -F mailroom_stop >/dev/null && mailroom_stop
	declare -F postfix_stop >/dev/null && postfix_stop
	declare -F durable_stop >/dev/null && durable_stop
	for p in "${HELPER_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${HELPER_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	if [ -n "$KEEP" ]; then
		echo "bench: scratch folder kept: $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT SECONDS: until a server there greets (220); then QUIT.
wait_port() {
	python3 - "$1" "$2" <<'PY'
import socket, sys, time
port, end = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            if s.recv(512).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                s.recv(512)
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

wait_file() {
	local i
	for ((i = 0; i < 100; i++)); do [ -s "$1" ] && return 0; sleep 0.1; done
	return 1
}

now() { date +%s.%N; }
# rate N T0 T1: messages per second.
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.1f", (b > a) ? n / (b - a) : 0 }'; }

# ---------------------------------------------------------------- progress
TOTAL=0
STEP=0
START=$(date +%s)
nconc=$(wc -w <<<"$CONCS")
nsrv=$(wc -w <<<"$SERVERS")
# The durable sink only accepts: it relays nothing and is no idle reference.
nmta=$(wc -w <<<"${SERVERS//durable/}")
for s in $SCENARIOS; do
	case $s in
	ceiling) TOTAL=$((TOTAL + nconc)) ;;
	accept) TOTAL=$((TOTAL + nconc * nsrv)) ;;
	relay) TOTAL=$((TOTAL + nconc * nmta)) ;;
	latency) TOTAL=$((TOTAL + 1 + nsrv)) ;;
	idle) TOTAL=$((TOTAL + nmta)) ;;
	logins) [[ " $SERVERS " == *" mailroom "* ]] && TOTAL=$((TOTAL + 1)) ;;
	esac
done
TOTAL=$((TOTAL * RUNS))

# begin TEXT: the start of the progress line of the next measurement.
begin() {
	STEP=$((STEP + 1))
	local e=$(($(date +%s) - START))
	printf '[%d/%d %d:%02d] %s …' "$STEP" "$TOTAL" $((e / 60)) $((e % 60)) "$1" >&2
}

# record RUN FIGURE UNIT REFERENCE SERVER VALUE STATUS [NOTE]: a raw result
# line (see benchkit report), and the end of the progress line.
record() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${8:-}" >>"$RAW"
	if [ "$7" = ok ]; then
		printf ' %s %s%s' "$6" "$3" "${8:+ ($8)}" >&2
	else
		printf ' FAILED%s' "${8:+ ($8)}" >&2
	fi
}
endline() { echo >&2; }

# ---------------------------------------------------------------- helpers
echo "bench: building mailroom and benchkit" >&2
# The commit measured is the one built now, whatever happens to the tree
# during the run.
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit (with uncommitted changes)"
make -s build >/dev/null || die "make build failed"
MAILROOM=$PWD/bin/mailroom
KIT=$WORK/benchkit
go build -o "$KIT" ./bench/cmd/benchkit || die "building bench/cmd/benchkit failed"

"$KIT" sink -addr-file "$WORK/sink.addr" >"$WORK/sink.log" 2>&1 &
HELPER_PIDS+=($!)
wait_file "$WORK/sink.addr" || die "the sink did not start: $(cat "$WORK/sink.log")"
read -r SINK_SMTP SINK_CTL <"$WORK/sink.addr"
SINK_PORT=${SINK_SMTP##*:}

# bench.test, the relayed domain: its MX is the sink (on SINK_PORT, which
# Mailroom's [outbound] port names).
"$KIT" dns -addr-file "$WORK/dns.addr" \
	-rr "bench.test. 60 IN MX 10 mx.bench.test." \
	-rr "mx.bench.test. 60 IN A 127.0.0.1" >"$WORK/dns.log" 2>&1 &
HELPER_PIDS+=($!)
wait_file "$WORK/dns.addr" || die "the DNS server did not start: $(cat "$WORK/dns.log")"
DNS_ADDR=$(cat "$WORK/dns.addr")

sink_reset() { curl -fsS --max-time 10 -X POST "http://$SINK_CTL/reset" >/dev/null; }
# sink_wait N SECONDS: prints "count=C nth=UNIXNANO" (nth=0: not reached in
# time, or nothing arrived for STALL_SECS).
sink_wait() { curl -sS --max-time $(($2 + 10)) "http://$SINK_CTL/wait?n=$1&timeout=${2}s&stall=${STALL_SECS}s"; }

# load PORT CONC RCPT: smtp-source, N messages; sets SRC_RC, T0, T1.
load() {
	local c=${2%d} flags=""
	[ "$c" != "$2" ] && flags=-d
	T0=$(now)
	timeout "$MAX_SECS" "$SMTP_SOURCE" -4 $flags -s "$c" -m "$N" -l "$SIZE" -M client.test \
		-f sender@client.test -t "$3" "127.0.0.1:$1" >"$WORK/load.log" 2>&1 &
	LOAD_PID=$!
	SRC_RC=0
	wait "$LOAD_PID" || SRC_RC=$?
	LOAD_PID=""
	T1=$(now)
}
load_error() {
	local msg
	msg=$(grep -m1 -E 'fatal|warning|error' "$WORK/load.log" | tr '\t' ' ' | cut -c1-160)
	[ "$SRC_RC" -eq 124 ] && msg="timed out after ${MAX_SECS}s; $msg"
	echo "smtp-source exit $SRC_RC${msg:+: $msg}"
}

conc_label() { if [[ $1 == *d ]]; then echo "C=${1%d} -d"; else echo "C=$1"; fi; }

# ---------------------------------------------------------------- Mailroom
MR_DIR=$WORK/mailroom
mailroom_start() {
	rm -rf "$MR_DIR" && mkdir -p "$MR_DIR" || return 1
	MR_PORT=$(free_port)
	MR_SUB_PORT=$(free_port)
	local maxconn=$((IDLE_N + 1000))
	cat >"$MR_DIR/mailroom.toml" <<EOF
# Written by bench/run.sh. Everything not named here is Mailroom's default
# (fsync on, group commit, info logs).
hostname = "mx.mailroom.test"
data_dir = "$MR_DIR/data"
shutdown_timeout = "10s"

[listen]
smtp = ["127.0.0.1:$MR_PORT"]
submission = ["127.0.0.1:$MR_SUB_PORT"]

[smtp]
# smtp-source relays from here, like Postfix's mynetworks.
trusted_networks = [$TRUSTED]
# All the load comes from 127.0.0.1: lift the per-client limit (50), and the
# total for the idle connections.
max_connections = $maxconn
max_connections_per_client = $maxconn

[mailbox]
# N x SIZE may exceed the default 1GiB quota.
quota = 0

[dns]
resolver = "$DNS_ADDR"

[outbound]
port = $SINK_PORT
EOF
	local cfg=(--config "$MR_DIR/mailroom.toml")
	# With SIGN=1 client.test, the senders' domain, is ours too: relayed
	# mail is then DKIM-signed (ed25519 and RSA), as a sending platform's
	# is. Without it nothing is signed, as with the Postfix beside it.
	"$MAILROOM" "${cfg[@]}" domain add local.test >>"$MR_DIR/setup.log" 2>&1 &&
		{ [ -z "$SIGN" ] || "$MAILROOM" "${cfg[@]}" domain add client.test >>"$MR_DIR/setup.log" 2>&1; } &&
		echo bench-password | "$MAILROOM" "${cfg[@]}" user add user@local.test --password-stdin >>"$MR_DIR/setup.log" 2>&1 ||
		{ MR_ERR="setup: $(tail -1 "$MR_DIR/setup.log")"; return 1; }
	"$MAILROOM" "${cfg[@]}" serve >"$MR_DIR/serve.log" 2>&1 &
	MR_PID=$!
	SERVER_PID=$MR_PID
	SERVER_PORT=$MR_PORT
	wait_port "$MR_PORT" 30 || { MR_ERR="did not listen: $(tail -1 "$MR_DIR/serve.log")"; return 1; }
}

# mailroom_notes: peak memory, log lines above info and sessions that did
# not end well, for the report.
mailroom_notes() {
	local log=$MR_DIR/serve.log hwm warn bad
	hwm=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$MR_PID/status" 2>/dev/null)
	printf 'peak RSS %s MB' "${hwm:-?}"
	warn=$(grep -c -E 'level=(WARN|ERROR)' "$log")
	[ "$warn" -gt 0 ] && printf '; %s warn/error log lines, first: %s' "$warn" \
		"$(grep -m1 -E 'level=(WARN|ERROR)' "$log" | cut -c1-200)"
	bad=$(grep 'msg="smtp session"' "$log" | grep -c -v -E 'rejected=0 refused_recipients=0 errors=0 result=ok$')
	[ "$bad" -gt 0 ] && printf '; %s sessions with rejections, errors or not ending in QUIT, first: %s' "$bad" \
		"$(grep 'msg="smtp session"' "$log" | grep -m1 -v -E 'rejected=0 refused_recipients=0 errors=0 result=ok$' | sed 's/.*accepted=/accepted=/' | cut -c1-200)"
	return 0
}

mailroom_stop() {
	[ -n "$MR_PID" ] || return 0
	kill -TERM "$MR_PID" 2>/dev/null
	local i
	for ((i = 0; i < 150; i++)); do kill -0 "$MR_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$MR_PID" 2>/dev/null
	wait "$MR_PID" 2>/dev/null
	MR_PID=""
}

mailroom_delivered() { # messages in user@local.test's mailbox
	"$MAILROOM" --config "$MR_DIR/mailroom.toml" mailbox list user@local.test --json 2>/dev/null |
		python3 -c 'import json, sys; print(len(json.load(sys.stdin) or []))' 2>/dev/null || echo "?"
}

# ---------------------------------------------------------------- Postfix
# Its own instance, as in tests/postfix_test.go: configuration, queue, data
# and mailboxes in the scratch folder, started with "postfix -c"; main.cf
# from ../shared/bench/postfix-bench-main.cf (relay everything for
# bench.test to the sink), plus a virtual mailbox domain for local.test.
PF_DIR=$WORK/postfix
postfix_start() {
	rm -rf "$PF_DIR" && mkdir -p "$PF_DIR"/{etc,queue,mail} || return 1
	chown nobody:nogroup "$PF_DIR/mail" 2>/dev/null || chown 65534:65534 "$PF_DIR/mail"
	PF_PORT=$(free_port)
	local uid gid maxproc=$((IDLE_N_POSTFIX + 100))
	uid=$(id -u nobody 2>/dev/null || echo 65534)
	gid=$(id -g nobody 2>/dev/null || echo 65534)
	cat >"$PF_DIR/etc/main.cf" <<EOF
# Written by bench/run.sh from ../shared/bench/postfix-bench-main.cf.
compatibility_level = 3.6
myhostname = mx.bench.test
mydomain = bench.test
myorigin = \$mydomain
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
relay_domains = bench.test
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
relayhost = [127.0.0.1]:$SINK_PORT
smtp_dns_support_level = disabled
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
# This instance's own folders.
queue_directory = $PF_DIR/queue
data_directory = $PF_DIR/data
maillog_file = $PF_DIR/maillog
maillog_file_prefixes = $PF_DIR
# local.test: Maildirs (fsynced by virtual(8)), the counterpart of
# Mailroom's local mailbox.
virtual_mailbox_domains = local.test
virtual_mailbox_base = $PF_DIR/mail
virtual_mailbox_maps = texthash:$PF_DIR/etc/vmailbox
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
EOF
	echo "user@local.test user/" >"$PF_DIR/etc/vmailbox"
	# One smtpd per connection: enough of them for the idle connections.
	cat >"$PF_DIR/etc/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - $maxproc smtpd
pickup     unix n - n 60 1 pickup
cleanup    unix n - n - 0 cleanup
qmgr       unix n - n 300 1 qmgr
tlsmgr     unix - - n 1000? 1 tlsmgr
rewrite    unix - - n - - trivial-rewrite
bounce     unix - - n - 0 bounce
defer      unix - - n - 0 bounce
trace      unix - - n - 0 bounce
verify     unix - - n - 1 verify
flush      unix n - n 1000? 0 flush
proxymap   unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
smtp       unix - - n - - smtp
relay      unix - - n - - smtp
showq      unix n - n - - showq
error      unix - - n - - error
retry      unix - - n - - error
discard    unix - - n - - discard
virtual    unix - n n - - virtual
anvil      unix - - n - 1 anvil
scache     unix - - n - 1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
	PF_CONF=$PF_DIR/etc
	if ! timeout 60 "$POSTFIX" -c "$PF_CONF" start >"$PF_DIR/start.log" 2>&1; then
		PF_ERR="postfix start: $(tail -1 "$PF_DIR/start.log") $(tail -1 "$PF_DIR/maillog" 2>/dev/null)"
		return 1
	fi
	PF_MASTER=$(awk '{ print $1; exit }' "$PF_DIR/queue/pid/master.pid" 2>/dev/null)
	SERVER_PID=$PF_MASTER
	SERVER_PORT=$PF_PORT
	wait_port "$PF_PORT" 30 || { PF_ERR="does not listen on $PF_PORT"; return 1; }
}

postfix_stop() {
	[ -n "$PF_CONF" ] || return 0
	timeout 30 "$POSTFIX" -c "$PF_CONF" stop >>"$PF_DIR/start.log" 2>&1
	local i
	for ((i = 0; i < 50; i++)); do kill -0 "$PF_MASTER" 2>/dev/null || break; sleep 0.1; done
	if [ -n "$PF_MASTER" ] && kill -0 "$PF_MASTER" 2>/dev/null; then
		timeout 30 "$POSTFIX" -c "$PF_CONF" abort >>"$PF_DIR/start.log" 2>&1
		kill -KILL "$PF_MASTER" 2>/dev/null
	fi
	PF_CONF=""
	PF_MASTER=""
}

# postfix_accepted: the messages Postfix kept for local.test. It waits
# (STALL_SECS without progress at most) for virtual(8) to empty the queue,
# then counts the Maildir: counting queue and Maildir while messages move
# between them would miss some.
postfix_accepted() {
	local q=$PF_DIR/queue queued last=-1 since=$SECONDS
	while :; do
		queued=$(find "$q/maildrop" "$q/incoming" "$q/active" "$q/deferred" "$q/hold" -type f 2>/dev/null | wc -l)
		[ "$queued" -eq 0 ] && break
		[ "$queued" -ne "$last" ] && last=$queued since=$SECONDS
		[ $((SECONDS - since)) -ge "$STALL_SECS" ] && break
		sleep 0.2
	done
	echo $(($(find "$PF_DIR/mail/user/new" "$PF_DIR/mail/user/cur" -type f 2>/dev/null | wc -l) + queued))
}

# ---------------------------------------------------------------- the durable sink
# benchkit sink -durable: the least a durable SMTP server does (the data of
# each message appended to one journal, a group fsync before the 250s, no
# parsing, no index), on the same disk as the servers' data. Its rates and
# latencies bound what any durable server reaches on this machine.
DS_DIR=$WORK/durable
durable_start() {
	rm -rf "$DS_DIR" && mkdir -p "$DS_DIR" || return 1
	# Room for N messages (envelope and data) written over zeros: blocks
	# already allocated, the best case for a durable server.
	"$KIT" sink -durable "$DS_DIR" -prealloc $((N * (SIZE + 1024))) -addr-file "$DS_DIR/addr" >"$DS_DIR/sink.log" 2>&1 &
	DS_PID=$!
	wait_file "$DS_DIR/addr" || { DS_ERR="did not start: $(tail -1 "$DS_DIR/sink.log")"; return 1; }
	read -r DS_SMTP DS_CTL <"$DS_DIR/addr"
	SERVER_PID=$DS_PID
	SERVER_PORT=${DS_SMTP##*:}
}
durable_stop() {
	[ -n "$DS_PID" ] || return 0
	kill "$DS_PID" 2>/dev/null
	wait "$DS_PID" 2>/dev/null
	DS_PID=""
}
durable_notes() {
	local hwm
	hwm=$(awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$DS_PID/status" 2>/dev/null)
	printf 'peak RSS %s MB' "${hwm:-?}"
}
durable_accepted() { # messages acknowledged with 250 (each after its fsync), or ?
	local got
	got=$(curl -sS --max-time 20 "http://$DS_CTL/wait?n=$N&timeout=10s" 2>/dev/null)
	got=${got#count=}
	got=${got%% *}
	if [[ $got =~ ^[0-9]+$ ]]; then echo "$got"; else echo "?"; fi
}

server_start() { # mailroom|postfix|durable; on failure sets START_ERR
	MR_ERR="" PF_ERR="" DS_ERR=""
	sync
	if "${1}_start"; then return 0; fi
	START_ERR="$1 did not start: $MR_ERR$PF_ERR$DS_ERR"
	"${1}_stop"
	return 1
}
# postfix_notes: warnings and rejections in Postfix's log, for the report.
postfix_notes() {
	local log=$PF_DIR/maillog n
	n=$(grep -c -E ': (warning|error|fatal|panic|reject):' "$log" 2>/dev/null)
	[ "${n:-0}" -gt 0 ] && printf '%s warning/error/reject log lines, first: %s' "$n" \
		"$(grep -m1 -E ': (warning|error|fatal|panic|reject):' "$log" | cut -c1-200)"
	return 0
}

server_notes() { "${1}_notes"; }

# diagnose SERVER RUN WHAT: when the sink did not get all N, keep what shows
# where the rest are (the queue, the sockets, Mailroom's goroutines: SIGQUIT
# makes it print them and exit) in a folder that outlives the scratch one;
# prints a short note.
DIAG=""
diagnose() {
	local base=$DIAG/run$2-$1-${3// /_}
	ss -tanp 2>/dev/null | grep -E "127.0.0.1:($SINK_PORT|$SERVER_PORT)\b" >"$base.sockets.txt"
	if [ "$1" = mailroom ]; then
		"$MAILROOM" --config "$MR_DIR/mailroom.toml" queue list >"$base.queue.txt" 2>&1
		kill -QUIT "$MR_PID" 2>/dev/null
		sleep 1
		cp "$MR_DIR/serve.log" "$base.log"
		printf 'queue: %s; queue, sockets and goroutines in %s.*' \
			"$("$MAILROOM" --config "$MR_DIR/mailroom.toml" queue stats 2>&1 | head -1)" "$base"
	else
		find "$PF_DIR/queue" -path '*/pid' -prune -o -type f -print >"$base.queue.txt" 2>&1
		cp "$PF_DIR/maillog" "$base.log"
		printf 'queue: %s files; queue, sockets and log in %s.*' "$(wc -l <"$base.queue.txt")" "$base"
	fi
}

# ---------------------------------------------------------------- measurements
measure_ceiling() { # RUN CONC
	local fig
	fig="ceiling, $(conc_label "$2")"
	begin "run $1/$RUNS: $fig, smtp-source → sink"
	sink_reset
	load "$SINK_PORT" "$2" rcpt@bench.test
	local got
	got=$(sink_wait "$N" 10)
	if [ "$SRC_RC" -eq 0 ] && [[ $got != *nth=0* ]]; then
		record "$1" "$fig" msg/s - reference "$(rate "$N" "$T0" "$T1")" ok
	else
		record "$1" "$fig" msg/s - reference 0 fail "$(load_error); sink $got"
	fi
	endline
}

measure_accept() { # RUN SERVER CONC: local mailbox
	local cl fig ref
	cl=$(conc_label "$3")
	fig="accept, local mailbox, $cl" ref="ceiling, $cl"
	begin "run $1/$RUNS: $fig, $2"
	if ! server_start "$2"; then
		record "$1" "$fig" msg/s "$ref" "$2" 0 fail "$START_ERR"
		endline
		return
	fi
	load "$SERVER_PORT" "$3" user@local.test
	local got note
	note=$(server_notes "$2")
	case $2 in
	mailroom) got=$(mailroom_delivered) ;;
	postfix) got=$(postfix_accepted) ;;
	durable) got=$(durable_accepted) ;;
	esac
	if [ "$SRC_RC" -ne 0 ]; then
		record "$1" "$fig" msg/s "$ref" "$2" 0 fail "$(load_error)${note:+; $note}"
	elif [ "$got" = "?" ] || [ "$got" -lt "$N" ]; then
		record "$1" "$fig" msg/s "$ref" "$2" 0 fail "smtp-source done but $got of $N messages kept${note:+; $note}"
	else
		record "$1" "$fig" msg/s "$ref" "$2" "$(rate "$N" "$T0" "$T1")" ok "$note"
	fi
	"${2}_stop"
	endline
}

measure_relay() { # RUN SERVER CONC: a relayed domain, accept and end to end
	local cl fig fig2 ref
	cl=$(conc_label "$3")
	fig="accept, relayed domain, $cl" fig2="end to end, relayed domain, $cl" ref="ceiling, $cl"
	begin "run $1/$RUNS: $fig and $fig2, $2"
	if ! server_start "$2"; then
		record "$1" "$fig" msg/s "$ref" "$2" 0 fail "$START_ERR"
		record "$1" "$fig2" msg/s "$ref" "$2" 0 fail "$START_ERR"
		endline
		return
	fi
	sink_reset
	load "$SERVER_PORT" "$3" rcpt@bench.test
	local got nth extra note
	got=$(sink_wait "$N" "$MAX_SECS")
	nth=${got##*nth=}
	# More than N at the sink: a message delivered twice (at least once).
	extra=$(sink_wait $((N + 1)) 1)
	[[ $extra == *nth=0* ]] || got="$got, more than N: $extra"
	note=$(server_notes "$2")
	if [ "$SRC_RC" -ne 0 ]; then
		record "$1" "$fig" msg/s "$ref" "$2" 0 fail "$(load_error)${note:+; $note}"
	else
		record "$1" "$fig" msg/s "$ref" "$2" "$(rate "$N" "$T0" "$T1")" ok
	fi
	if [ "$SRC_RC" -eq 0 ] && [[ $nth =~ ^[1-9][0-9]*$ ]]; then
		record "$1" "$fig2" msg/s "$ref" "$2" "$(rate "$N" "$T0" "$(awk -v x="$nth" 'BEGIN { printf "%.6f", x / 1e9 }')")" ok "$note"
	else
		[ -n "$DIAG" ] || DIAG=$(mktemp -d "$BENCH_TMP/mailroom-bench-diag.XXXXXX")
		note="$note; $(diagnose "$2" "$1" "$fig2")"
		record "$1" "$fig2" msg/s "$ref" "$2" 0 fail "sink: $got (${MAX_SECS}s at most, ${STALL_SECS}s without progress)${note:+; $note}"
	fi
	"${2}_stop"
	endline
}

# kv KEY LINE: the value of key=value in a line of benchkit or idleconn.py.
kv() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k { print $2; exit }'; }

measure_fsync() { # RUN
	begin "run $1/$RUNS: fsync probe, $FSYNC_N × $SIZE bytes in $WORK, and the latency floor (the sink)"
	local out
	if out=$("$KIT" fsync -dir "$WORK" -n "$FSYNC_N" -size "$SIZE" 2>&1); then
		record "$1" "disk: append $SIZE B + fsync, p50" ms - reference "$(kv p50_ms "$out")" ok
		record "$1" "disk: append $SIZE B + fsync, p99" ms - reference "$(kv p99_ms "$out")" ok "$(kv ops_per_s "$out") fsyncs/s"
	else
		record "$1" "disk: append $SIZE B + fsync, p99" ms - reference 0 fail "$out"
	fi
	# The floor under any server's latency here: the same probe against the
	# sink, which stores nothing (loopback round trips and scheduling only).
	if out=$(timeout "$MAX_SECS" "$KIT" latency -addr "$SINK_SMTP" -n "$LAT_N" -size "$SIZE" -to rcpt@bench.test 2>&1); then
		record "$1" "latency floor (the sink, storing nothing), p50" ms - reference "$(kv p50_ms "$out")" ok
		record "$1" "latency floor (the sink, storing nothing), p99" ms - reference "$(kv p99_ms "$out")" ok
	else
		record "$1" "latency floor (the sink, storing nothing), p99" ms - reference 0 fail "$out"
	fi
	sink_reset || true
	endline
}

measure_latency() { # RUN SERVER
	begin "run $1/$RUNS: latency, $LAT_N single messages each to a local mailbox and a relayed domain, $2"
	local p50ref="disk: append $SIZE B + fsync, p50" p99ref="disk: append $SIZE B + fsync, p99"
	if ! server_start "$2"; then
		record "$1" "latency p99, local mailbox" ms "$p99ref" "$2" 0 fail "$START_ERR"
		endline
		return
	fi
	local target rcpt out label targets="local relay"
	[ "$2" = durable ] && targets=local
	for target in $targets; do
		if [ $target = local ]; then rcpt=user@local.test label="local mailbox"; else rcpt=rcpt@bench.test label="relayed domain"; fi
		if out=$(timeout "$MAX_SECS" "$KIT" latency -addr "127.0.0.1:$SERVER_PORT" -n "$LAT_N" -size "$SIZE" -to "$rcpt" 2>"$WORK/latency.err"); then
			local failed note=""
			failed=$(kv failed "$out")
			[ "$failed" != 0 ] && note="$failed of $LAT_N failed: $(head -c 200 "$WORK/latency.err")"
			record "$1" "latency p50, $label" ms "$p50ref" "$2" "$(kv p50_ms "$out")" ok "$note"
			record "$1" "latency p99, $label" ms "$p99ref" "$2" "$(kv p99_ms "$out")" ok "$note"
		else
			record "$1" "latency p99, $label" ms "$p99ref" "$2" 0 fail "$(head -c 200 "$WORK/latency.err")"
		fi
	done
	"${2}_stop"
	endline
}

measure_idle() { # RUN SERVER
	local n=$IDLE_N
	[ "$2" = postfix ] && n=$IDLE_N_POSTFIX
	local fig="idle connections: memory (PSS) per connection" fig2="idle connections: a new client's EHLO answered while they are held"
	begin "run $1/$RUNS: $n idle connections, $2"
	if ! server_start "$2"; then
		record "$1" "$fig" "kB" - "$2" 0 fail "$START_ERR"
		endline
		return
	fi
	local out rc
	out=$(timeout "$MAX_SECS" python3 bench/idleconn.py 127.0.0.1 "$SERVER_PORT" "$n" "$SERVER_PID" --hold 3 --deadline $((MAX_SECS - 60)) 2>&1)
	rc=$?
	local note
	note="$n held; $(kv procs "$out") processes; PSS $(kv pss_kB "$out") kB; $(server_notes "$2")"
	note=${note%; }
	if [ $rc -eq 0 ]; then
		record "$1" "$fig" kB - "$2" "$(kv pss_per_conn_kB "$out")" ok "$note"
		record "$1" "$fig2" ms - "$2" "$(kv new_client_ms "$out")" ok
	else
		record "$1" "$fig" kB - "$2" 0 fail "idleconn.py exit $rc: $(tail -c 300 <<<"$out" | tr '\n\t' '  ')"
		record "$1" "$fig2" ms - "$2" 0 fail "see the line above"
	fi
	"${2}_stop"
	endline
}

measure_logins() { # RUN: repeated correct logins over submission (issue 21: at least 100/s)
	local fig="repeated correct logins over submission, 8 clients"
	begin "run $1/$RUNS: logins over submission, mailroom"
	if ! server_start mailroom; then
		record "$1" "$fig" "logins/s" - mailroom 0 fail "$START_ERR"
		endline
		return
	fi
	local out rc
	out=$(timeout "$MAX_SECS" python3 bench/logins.py 127.0.0.1 "$MR_SUB_PORT" 10 8 user@local.test bench-password 2>&1)
	rc=$?
	if [ $rc -eq 0 ]; then
		record "$1" "$fig" "logins/s" - mailroom "$(kv logins_per_s "$out")" ok "$(kv logins "$out") in 10 s; peak RSS $(awk '/VmHWM/ { printf "%d MB", $2 / 1024 }' /proc/"$MR_PID"/status)"
	else
		record "$1" "$fig" "logins/s" - mailroom 0 fail "logins.py exit $rc: $(tail -c 300 <<<"$out" | tr '\n\t' '  ')"
	fi
	mailroom_stop
	endline
}

# ---------------------------------------------------------------- the run
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
echo "bench: $COMMAND" >&2
echo "bench: scratch folder $WORK; sink $SINK_SMTP; DNS $DNS_ADDR; $TOTAL measurements" >&2
for ((run = 1; run <= RUNS; run++)); do
	for s in $SCENARIOS; do
		case $s in
		ceiling) for c in $CONCS; do measure_ceiling "$run" "$c"; done ;;
		accept) for c in $CONCS; do for srv in $SERVERS; do measure_accept "$run" "$srv" "$c"; done; done ;;
		relay) for c in $CONCS; do for srv in ${SERVERS//durable/}; do measure_relay "$run" "$srv" "$c"; done; done ;;
		latency)
			measure_fsync "$run"
			for srv in $SERVERS; do measure_latency "$run" "$srv"; done
			;;
		idle) for srv in ${SERVERS//durable/}; do measure_idle "$run" "$srv"; done ;;
		logins) [[ " $SERVERS " == *" mailroom "* ]] && measure_logins "$run" ;;
		esac
	done
done

# ---------------------------------------------------------------- the report
mkdir -p bench/results
stamp=$(date +%Y%m%d-%H%M)
out=bench/results/bench-$stamp${SMOKE:+-smoke}.md
{
	echo "# Mailroom vs Postfix, $(date '+%Y-%m-%d %H:%M %Z')"
	echo
	if [ -n "$SMOKE" ]; then
		echo "**Smoke run: these are not figures.** N=$N, $RUNS run(s), $IDLE_N idle connections (if measured): smaller"
		echo "than issue 6 asks for (N ≥ 20,000, 3 runs, 10,000); it only shows that the scenarios work end to end."
		echo
	fi
	echo "- command: \`$COMMAND\`"
	echo "- Mailroom: $commit; $(go version | cut -d' ' -f3); Postfix $("$POSTCONF" -dh mail_version 2>/dev/null)"
	echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')),"
	echo "  $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) memory, kernel $(uname -r),"
	echo "  data on $(df -T "$BENCH_TMP" | awk 'NR == 2 { print $2 " (" $1 ")" }'), load average before the run: $LOADAVG"
	echo "- $SIZE-byte bodies, N=$N messages per throughput run, smtp-source from Postfix; cells: median (min–max) of"
	echo "  the runs; ratios of medians. Reference: the load generator's ceiling at the same concurrency"
	echo "  (smtp-source into a sink that stays up) for throughput, the disk's fsync latency in the same run for"
	echo "  latency. Higher is better for msg/s, lower for ms and kB. bench/README.md explains each row."
	if [[ " $SERVERS " == *" durable "* ]]; then
		echo "- The durable sink (benchkit sink -durable: envelope and data written one after another into a zero-filled"
		echo "  journal, one write and one fsync per batch, nothing else) is a reference measured in the same run: a"
		echo "  server that only stores."
		echo "  Its ratio column is Mailroom's figure over its own (above 1 is slower for ms rows)."
	fi
	echo
	"$KIT" report "$RAW"
	echo
	echo "<details><summary>raw results (bench/run.sh)</summary>"
	echo
	echo '```'
	cat "$RAW"
	echo '```'
	echo
	echo "</details>"
} >"$out.tmp" && mv "$out.tmp" "$out"
echo "bench: $(($(date +%s) - START)) s; wrote $out" >&2
[ -n "$DIAG" ] && echo "bench: diagnostics of failed runs in $DIAG" >&2
cat "$out"
