#!/usr/bin/env bash
# Regenerates the bundled speech samples from public-domain text with Debian's flite and sox.
#   apt-get install flite sox && bash whisperkit/data/generate.sh
# Texts: Abraham Lincoln's Gettysburg Address (1863) and sentences from Aesop's Fables in
# George Fyler Townsend's translation (1867); both are in the public domain.
# Output: 16 kHz mono 16-bit FLAC beside this script, each with a .txt holding its reference text.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

speak() {  # speak NAME VOICE TEXT
  local name=$1 voice=$2 text=$3
  printf '%s\n' "$text" > "$name.txt"
  flite -voice "$voice" -t "$text" -o "$tmp/$name.wav"
  sox "$tmp/$name.wav" -r 16000 -c 1 -b 16 "$name.flac" pad 0.3 0.3
}

speak gettysburg slt "Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in Liberty, and dedicated to the proposition that all men are created equal. Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived and so dedicated, can long endure. We are met on a great battle-field of that war. We have come to dedicate a portion of that field, as a final resting place for those who here gave their lives that that nation might live. It is altogether fitting and proper that we should do this. But, in a larger sense, we can not dedicate, we can not consecrate, we can not hallow this ground. The brave men, living and dead, who struggled here, have consecrated it, far above our poor power to add or detract. The world will little note, nor long remember what we say here, but it can never forget what they did here. It is for us the living, rather, to be dedicated here to the unfinished work which they who fought here have thus far so nobly advanced. It is rather for us to be here dedicated to the great task remaining before us, that from these honored dead we take increased devotion to that cause for which they gave the last full measure of devotion, that we here highly resolve that these dead shall not have died in vain, that this nation, under God, shall have a new birth of freedom, and that government of the people, by the people, for the people, shall not perish from the earth."

clip=0
while IFS='|' read -r voice text; do
  clip=$((clip + 1))
  speak "$(printf 'aesop_%02d' "$clip")" "$voice" "$text"
done <<'CLIPS'
slt|A hare one day ridiculed the short feet and slow pace of the tortoise.
rms|Slow and steady wins the race.
awb|A crow, half dead with thirst, came upon a pitcher which had once been full of water.
slt|The fox jumped up, but just missed the hanging grapes.
rms|A lion was awakened from sleep by a mouse running over his face.
awb|The boy cried out, wolf, wolf, and the villagers came out to help him.
slt|An ant went to the bank of a river to quench its thirst.
rms|The dog saw his own shadow reflected in the stream below.
awb|Little friends may prove great friends.
slt|The wind and the sun were disputing which was the stronger.
CLIPS
