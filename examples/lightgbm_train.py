"""A LightGBM run recorded by the gitxp callback: `python lightgbm_train.py` in a git repository.

Needs `pip install 'gitxp[lightgbm]' scikit-learn`. Each iteration's
`valid-auc` and `valid-binary_logloss` become metrics at step = iteration;
LightGBM's parameters become params. Under `gitxp start -- python
lightgbm_train.py` the callback logs into that experiment instead.
"""

import lightgbm as lgb
from sklearn.datasets import load_breast_cancer

from gitxp.integrations.lightgbm import callback

X, y = load_breast_cancer(return_X_y=True)
train = lgb.Dataset(X[:400], label=y[:400])
valid = lgb.Dataset(X[400:], label=y[400:], reference=train)
params = {"objective": "binary", "metric": ["auc", "binary_logloss"], "num_leaves": 8, "verbose": -1}
booster = lgb.train(params, train, 20, valid_sets=[valid], valid_names=["valid"], callbacks=[callback(tags={"kind": "example"})])
print(f"valid auc after {booster.current_iteration()} iterations: {booster.best_score['valid']['auc']:.4f}")
