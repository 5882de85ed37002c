#!/usr/bin/env bash
# Regenerates fixtures/: the speech clips (espeak-ng + sox) and every recorded call.
#
#   scripts/make-fixtures.sh            # clips + calls
#   scripts/make-fixtures.sh --calls    # calls only (keep the committed clips)
#
# Needs espeak-ng and sox for the clips (Debian: apt-get install -y espeak-ng sox). The calls are
# recorded by `callbridge gen-fixtures`: the real bridge with --record-dir between the in-repo
# Realtime simulator (answering with the agent clips) and the simulated caller (speaking the
# caller clips), in real time; then every fixture is replayed once to check it.
set -euo pipefail
cd "$(dirname "$0")/.."
speech=fixtures/speech

if [[ "${1:-}" != "--calls" ]]; then
  for tool in espeak-ng sox; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install -y espeak-ng sox)" >&2; exit 1; }
  done
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  grep -v '^#' "$speech/lines.tsv" | while IFS=$'\t' read -r name voice text; do
    [[ -z "$name" ]] && continue
    espeak-ng -v "$voice" -s 160 -w "$tmp/$name.wav" "$text"
    # 8 kHz μ-law mono, as Twilio sends it; leading/trailing silence trimmed, level normalised.
    sox "$tmp/$name.wav" -r 8000 -c 1 -e mu-law -t raw "$speech/$name.ulaw" \
      silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse gain -n -3
    printf '%-16s %5.2f s\n' "$name" "$(echo "$(stat -c %s "$speech/$name.ulaw") / 8000" | bc -l)"
  done
fi

cargo run --release --quiet -- gen-fixtures --out fixtures
cargo run --release --quiet -- replay --fast fixtures/*.jsonl
du -ch fixtures | tail -1
