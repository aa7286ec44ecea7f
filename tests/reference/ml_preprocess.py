# Reference values for src/ml/preprocess tests, from scikit-learn itself (version printed
# first). Run with a venv that has scikit-learn: python tests/reference/ml_preprocess.py
import numpy as np, sklearn
from sklearn.preprocessing import (StandardScaler, MinMaxScaler, RobustScaler, OneHotEncoder,
    OrdinalEncoder, LabelEncoder, TargetEncoder, PolynomialFeatures, KBinsDiscretizer)
from sklearn.impute import SimpleImputer
nan = float("nan")
X = np.array([[1, 10, 0.5], [2, nan, 0.5], [4, 30, 0.5], [8, 20, 1.5], [3, 50, 0.5], [5, 40, 2.5]])
Q = np.array([[0, 25, 1], [9, 35, 2]], dtype=float)
def show(name, a): print(name, repr(np.asarray(a, dtype=float).ravel().tolist()))
print("sklearn", sklearn.__version__)
s = StandardScaler().fit(X); show("STD_MEAN", s.mean_); show("STD_SCALE", s.scale_); show("STD_Q", s.transform(Q))
m = MinMaxScaler(feature_range=(-1, 2)).fit(X); show("MINMAX_Q", m.transform(Q))
r = RobustScaler().fit(X); show("ROBUST_CENTER", r.center_); show("ROBUST_SCALE", r.scale_); show("ROBUST_Q", r.transform(Q))
for st in ["mean", "median", "most_frequent"]:
    show("IMPUTE_" + st.upper(), SimpleImputer(strategy=st).fit(X).statistics_)
X2 = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 2.0]])
show("POLY2", PolynomialFeatures(2).fit_transform(X2))
show("POLY3_INTER_NOBIAS", PolynomialFeatures(3, interaction_only=True, include_bias=False).fit_transform(X2))
Xb = np.array([[0.0, 1], [1, 1], [2, 2], [3, 3], [4, 5], [10, 8], [7, 13], [6, 21]])
Qb = np.array([[-1.0, 4], [3.3, 9], [20, 100], [5, 1]])
k = KBinsDiscretizer(n_bins=3, encode="ordinal", strategy="uniform").fit(Xb)
show("KBINS_UNIFORM_EDGES", np.concatenate(k.bin_edges_)); show("KBINS_UNIFORM_Q", k.transform(Qb))
k = KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="quantile", quantile_method="linear").fit(Xb)
show("KBINS_QUANTILE_EDGES", np.concatenate(k.bin_edges_)); show("KBINS_QUANTILE_Q", k.transform(Qb))
C = [["red", "S"], ["blue", "M"], ["red", "L"], ["green", "M"], ["red", "M"]]
y = [1.0, 3.0, 2.0, 10.0, 4.0]
o = OneHotEncoder(handle_unknown="ignore").fit(C)
print("ONEHOT_CATS", [list(c) for c in o.categories_]); show("ONEHOT_Q", o.transform([["blue", "L"], ["purple", "S"]]).toarray())
show("ORDINAL_Q", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1).fit(C).transform([["green", "S"], ["x", "M"]]))
t = TargetEncoder(smooth=2.0, target_type="continuous").fit(C, y)
show("TARGET_ENC_COL0", t.encodings_[0]); show("TARGET_ENC_COL1", t.encodings_[1]); show("TARGET_MEAN", [t.target_mean_])
show("TARGET_Q", t.transform([["blue", "L"], ["purple", "M"]]))
