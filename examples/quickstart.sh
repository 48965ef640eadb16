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

# `99 0.0123` lines (step, loss) need --scalar; --scalars reads `val_loss: … - val_acc: …`
# and leaves the printed equation `Result: y = …` alone.
loss='loss=^(?P<step>\d+) ([-+.\deE]+)$'
gitxp start --scalars --scalar "$loss" -p lr=0.1 --artifact model.txt -- python train.py --lr 0.1
gitxp start --scalars --scalar "$loss" -p lr=0.5 -- python train.py --lr 0.5
python api_train.py
gitxp log
gitxp show @~2
gitxp table --columns 'params.*,metrics.*'
gitxp diff @~2 @~1
echo
echo "store: git log --oneline gitxp (in $work)"
git log --oneline gitxp
