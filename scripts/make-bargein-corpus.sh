#!/usr/bin/env bash
# Regenerates fixtures/bargein/: the labelled barge-in corpus (issue 21, "Measure it honestly").
#
#   scripts/make-bargein-corpus.sh
#
# Needs espeak-ng and sox ONLY to regenerate (Debian: apt-get install -y espeak-ng sox); the clips
# are committed, so tests and the bench never need either tool. Deterministic: espeak-ng is
# deterministic, and sox runs with -R (fixed random seed for its noise generators) and -D (no
# dither), so two runs produce identical bytes.
#
# Every clip is 8 kHz μ-law mono raw, as Twilio sends it (like fixtures/speech). The manifest
# fixtures/bargein/manifest.tsv lists each clip with:
#   name  class  level_db  half  onset_ms  text
# class     noise | backchannel | interruption | silence
# level_db  the clip's peak level in dBFS (sox `gain -n`)
# half      tune | heldout: a fixed checkerboard rule over (sound or sentence, level) within each
#           class (see half_for), so tuning never sees the held-out half and both hold every level
# onset_ms  where the caller's speech starts inside the clip (0: the clips are trimmed); empty
#           for non-speech
# Speakerphone echo is not a clip: the fake caller makes it live from the agent audio it plays.
set -euo pipefail
cd "$(dirname "$0")/.."
out=fixtures/bargein
for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install -y espeak-ng sox)" >&2; exit 1; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -f "$out"/*.ulaw "$out/manifest.tsv"
mkdir -p "$out"
manifest="$out/manifest.tsv"
printf '# name\tclass\tlevel_db\thalf\tonset_ms\ttext\n' >"$manifest"

# The fixed split rule: a checkerboard over (sound or sentence i, level j) within each class, so
# both halves hold every level and half of the sounds/sentences/voices: (i + j) even -> tune.
half_for() { if ((($1 + $2) % 2 == 0)); then echo tune; else echo heldout; fi; }

# $1 name, $2 class, $3 level dB, $4 onset ms, $5 text, $6 $7 the (i, j) of the split rule;
# the source is $tmp/src.wav
emit() {
  sox -R -D "$tmp/src.wav" -r 8000 -c 1 -e mu-law -t raw "$out/$1.ulaw" gain -n "$3"
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(half_for "$6" "$7")" "$4" "$5" >>"$manifest"
}

# --- non-speech sounds, each at three peak levels -------------------------------------------
synth() { sox -R -D -n -r 8000 -c 1 "$tmp/src.wav" "$@"; }
noise_sound() { # $1 kind: builds $tmp/src.wav
  case "$1" in
  cough) # two short broadband bursts with a fast attack and a decaying tail
    synth synth 0.3 pinknoise bandpass 700 600h fade l 0.005 0.3 0.25 pad 0 0.12 repeat 1 ;;
  door) # a slam: low thump plus brown noise, sharp attack, long decay
    synth synth 0.7 brownnoise mix sine 70 lowpass 600 fade p 0.002 0.7 0.65 ;;
  knock) # three knocks
    synth synth 0.06 pinknoise mix sine 220 bandpass 400 300h fade l 0 0.06 0.05 pad 0 0.2 repeat 2 ;;
  keyboard) # typing: a dozen short high clicks
    synth synth 0.008 whitenoise highpass 2000 pad 0 0.11 repeat 11 ;;
  tv) # TV / babble-like: speech-band noise modulated at syllable rate
    synth synth 2.0 pinknoise sinc 300-3400 tremolo 4 90 ;;
  line) # line noise: hiss plus mains hum, telephone band
    synth synth 2.0 whitenoise mix sine 60 sinc 100-3400 ;;
  breath) # a breath into the mouthpiece: soft high noise swelling and fading
    synth synth 0.8 pinknoise highpass 800 lowpass 3000 fade h 0.3 0.8 0.4 ;;
  esac
}
i=0
for kind in cough door knock keyboard tv line breath; do
  j=0
  for level in -30 -20 -10; do
    noise_sound "$kind"
    emit "noise_${kind}_${level#-}" noise "$level" "" "$kind" $i $j
    j=$((j + 1))
  done
  i=$((i + 1))
done

# --- speech (espeak-ng), trimmed and normalised like scripts/make-fixtures.sh -----------------
# The agent speaks en-us+f3 (fixtures/speech); the callers use other voices.
voices=(en-us en-gb+m3 en-us+f2 en-gb-scotland+f4)
speak() { # $1 voice, $2 text, $3 words per minute -> $tmp/src.wav
  espeak-ng -v "$1" -s "$3" -w "$tmp/raw.wav" "$2"
  sox -R -D "$tmp/raw.wav" -r 8000 -c 1 "$tmp/src.wav" \
    silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
}
slug() { echo "$1" | tr 'A-Z' 'a-z' | tr -cs 'a-z' '_' | sed 's/_$//'; }

# $1 class, $2 words per minute, $3 the two levels ("loud soft"), then the lines: each line at
# each level, the voices taken in turn.
speech_class() {
  local class=$1 wpm=$2 levels=$3 v=0 i=0 j level voice text
  shift 3
  for text in "$@"; do
    j=0
    for level in $levels; do
      voice=${voices[$((v % ${#voices[@]}))]}
      v=$((v + 1))
      speak "$voice" "$text" "$wpm"
      emit "${class}_$(slug "$text" | cut -c1-24)_${level#-}" "$class" "$level" 0 "$text" $i $j
      j=$((j + 1))
    done
    i=$((i + 1))
  done
}

# Backchannels: short, several voices, at a normal and a soft level.
speech_class backchannel 170 "-3 -15" "mm-hmm" "uh-huh" "yeah" "okay" "right"

# Real interruptions: short words and long sentences, loud and soft, several voices.
speech_class interruption 165 "-3 -18" "Wait." "Stop." "Hold on." "No, no." \
  "Sorry, that is not what I asked, I need the opening hours for Sunday." \
  "Actually, can you cancel that order and put me through to a person?" \
  "Excuse me, I think you have the wrong account number there." \
  "Hang on, I have a different question about my delivery address."

# Silence with line noise: the quiet line a caller holds while the agent talks.
j=0
for level in -50 -40; do
  synth synth 3.0 whitenoise sinc 300-3400
  emit "silence_line_${level#-}" silence "$level" "" "line noise" 0 $j
  j=$((j + 1))
done

awk -F'\t' '!/^#/ {n[$2" "$4]++} END {for (k in n) print k, n[k]}' "$manifest" | sort
du -sh "$out"
