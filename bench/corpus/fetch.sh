#!/usr/bin/env bash
# Download the corpus named in bench/corpus/SOURCES.tsv (repository, path, commit) from
# GitHub into DIR (default target/corpus/files) as NNN.ini. Needs network access to
# raw.githubusercontent.com. The files are third-party content: they are not committed.
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${1:-target/corpus/files}"
mkdir -p "$DIR"
tail -n +2 bench/corpus/SOURCES.tsv | while IFS=$'\t' read -r id repo path commit; do
    [ -s "$DIR/$id.ini" ] && continue
    curl -fsSL "https://raw.githubusercontent.com/$repo/$commit/$path" -o "$DIR/$id.ini" \
        || echo "fetch failed: $repo $path @ $commit" >&2
done
echo "$(ls "$DIR" | wc -l) files in $DIR"
