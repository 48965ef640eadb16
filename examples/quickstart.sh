#!/usr/bin/env bash
# The main job on an example, in a scratch repository: a wrapped, unchanged
# training script, then `gitxp log` and `gitxp show @`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${1:-$(mktemp -d)/gitxp-quickstart}"
mkdir -p "$work" && cd "$work"
git init -q -b main 2>/dev/null || git init -q
git config user.name >/dev/null || git config user.name "gitxp quickstart"
git config user.email >/dev/null || git config user.email "quickstart@example.com"
cp "$here/train.py" "$here/api_train.py" .
git add train.py && git commit -q -m "add training script"
echo "# an uncommitted edit: recorded in the snapshot too" >> train.py

gitxp start --scalars -p lr=0.1 --artifact model.txt -- python train.py --lr 0.1
gitxp start --scalars -p lr=0.3 -- python train.py --lr 0.3
python api_train.py
gitxp log
gitxp show @~2
gitxp artifacts @~2
echo
echo "store: git log --oneline gitxp (in $work)"
git log --oneline gitxp
