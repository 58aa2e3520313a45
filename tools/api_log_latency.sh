#!/usr/bin/env bash
# The API's latency for message-log searches over a 100,000-message log, measured through the real HTTP
# server: fills a gateway database with the store's log_search bench (MAILSIFT_BENCH_DIR keeps it), starts
# `mailsift serve` on it (loopback), and times each search as a client sees it (connect, request, JSON back).
#
#   tools/api_log_latency.sh [rows] [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-100000}
runs=${2:-21}
dir=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$dir"' EXIT
cargo build --release -q -p mailsift
MAILSIFT_BENCH_ROWS=$rows MAILSIFT_BENCH_DIR="$dir" cargo bench -q -p mailsift-store --bench log_search >"$dir/store-bench.txt" 2>&1
printf 'api-latency-password\n' | target/release/mailsift --data-dir "$dir" accounts add bench --role admin >/dev/null
token=$(target/release/mailsift --data-dir "$dir" accounts token bench --days 1)
cat >"$dir/config.toml" <<CONF
[smtp]
listen = ["127.0.0.1:0"]
[web]
listen = "127.0.0.1:0"
[web.digest]
enabled = false
CONF
target/release/mailsift --config "$dir/config.toml" --data-dir "$dir" serve >"$dir/serve.out" 2>"$dir/serve.err" &
server=$!
for _ in $(seq 100); do grep -q "HTTP listening" "$dir/serve.out" 2>/dev/null && break; sleep 0.1; done
addr=$(sed -n 's/^mailsift: HTTP listening on //p' "$dir/serve.out")
python3 - "$addr" "$token" "$runs" <<'PY'
import http.client, json, statistics, sys, time
addr, token, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
host, port = addr.rsplit(":", 1)
searches = [
    ("newest 50", ""),
    ("sender contains (common)", "sender=newsletter"),
    ("sender contains (absent)", "sender=nobody-at-all"),
    ("recipient contains", "recipient=example.org"),
    ("subject contains (absent)", "subject=zzzz-not-there"),
    ("action quarantine", "action=quarantine"),
    ("symbol", "symbol=SPF_PASS"),
    ("last day (time range)", "since=1799913600"),
    ("time range + absent subject", "since=1799100000&until=1799186400&subject=zzzz"),
    ("page 20 (offset 1000)", "offset=1000"),
]
print(f"{'search':<32} {'median ms':>10} {'p95 ms':>8} {'found':>6} {'db ms':>7}")
worst = 0.0
for name, q in searches:
    times = []
    for _ in range(runs):
        c = http.client.HTTPConnection(host, int(port))
        t = time.perf_counter()
        c.request("GET", "/api/v1/log?limit=50&" + q, headers={"Authorization": "Bearer " + token})
        r = c.getresponse()
        body = r.read()
        times.append((time.perf_counter() - t) * 1000)
        c.close()
        assert r.status == 200, body
    d = json.loads(body)
    times.sort()
    p95 = times[int(len(times) * 0.95) - 1]
    worst = max(worst, p95)
    print(f"{name:<32} {statistics.median(times):>10.1f} {p95:>8.1f} {len(d['entries']):>6} {d['elapsed_ms']:>7.1f}")
print(f"worst p95: {worst:.1f} ms (target 100 ms)")
PY
