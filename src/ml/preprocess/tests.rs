//! Against scikit-learn 1.9.1: every expected number below was printed by
//! `tests/reference/ml_preprocess.py` (sklearn itself, on the same data).

use super::*;

const NAN: f64 = f64::NAN;

fn x() -> Tensor<f64> {
    Tensor::new(
        &[6, 3],
        vec![
            1., 10., 0.5, 2., NAN, 0.5, 4., 30., 0.5, 8., 20., 1.5, 3., 50., 0.5, 5., 40., 2.5,
        ],
    )
    .unwrap()
}

fn q() -> Tensor<f64> {
    Tensor::new(&[2, 3], vec![0., 25., 1., 9., 35., 2.]).unwrap()
}

fn close(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-12 * w.abs().max(1.0),
            "[{i}] {g} vs {w}"
        );
    }
}

fn strings(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

#[test]
fn scalers_match_sklearn() {
    let mut s = StandardScaler::default();
    s.fit(&x()).unwrap();
    close(&s.mean, &[3.8333333333333335, 30.0, 1.0]);
    close(
        &s.scale,
        &[2.266911751455907, 14.142135623730951, 0.7637626158259734],
    );
    close(
        s.transform(&q()).unwrap().data(),
        &[
            -1.6909936308157578,
            -0.35355339059327373,
            0.0,
            2.2791653284908038,
            0.35355339059327373,
            1.3093073414159542,
        ],
    );
    let mut m = MinMaxScaler {
        range: (-1.0, 2.0),
        ..MinMaxScaler::default()
    };
    m.fit(&x()).unwrap();
    close(
        m.transform(&q()).unwrap().data(),
        &[
            -1.4285714285714286,
            0.125,
            -0.25,
            2.428571428571428,
            0.875,
            1.25,
        ],
    );
    let mut r = RobustScaler::default();
    r.fit(&x()).unwrap();
    close(&r.center, &[3.5, 30.0, 0.5]);
    close(&r.scale, &[2.5, 20.0, 0.75]);
    close(
        r.transform(&q()).unwrap().data(),
        &[-1.4, -0.25, 0.6666666666666666, 2.2, 0.25, 2.0],
    );
    let mut inplace = q();
    s.transform_in_place(&mut inplace).unwrap();
    assert_eq!(inplace, s.transform(&q()).unwrap());
    // A NaN stays NaN; a constant column gets scale 1.
    let t = s.transform(&x()).unwrap();
    assert!(t.data()[4].is_nan());
    let mut c = StandardScaler::default();
    c.fit(&Tensor::new(&[2, 1], vec![7.0, 7.0]).unwrap())
        .unwrap();
    assert_eq!(c.scale, [1.0]);
    assert!(s.transform(&Tensor::zeros(&[1, 2])).is_err());
}

#[test]
fn imputer_matches_sklearn() {
    for (st, want) in [
        (Strategy::Mean, [3.8333333333333335, 30.0, 1.0]),
        (Strategy::Median, [3.5, 30.0, 0.5]),
        (Strategy::MostFrequent, [1.0, 10.0, 0.5]),
    ] {
        let mut i = SimpleImputer::new(st);
        i.fit(&x()).unwrap();
        close(&i.statistics, &want);
        assert_eq!(i.transform(&x()).unwrap().data()[4], want[1]);
    }
    let mut i = SimpleImputer::new(Strategy::Constant(-7.0));
    assert_eq!(i.fit_transform(&x()).unwrap().data()[4], -7.0);
    let all_nan = Tensor::new(&[2, 1], vec![NAN, NAN]).unwrap();
    assert!(SimpleImputer::new(Strategy::Mean).fit(&all_nan).is_err());
}

#[test]
fn polynomial_features_match_sklearn() {
    let x2 = Tensor::new(&[2, 3], vec![1.0, 2.0, 3.0, -1.0, 0.5, 2.0]).unwrap();
    let mut p = PolynomialFeatures::new(2);
    close(
        p.fit_transform(&x2).unwrap().data(),
        &[
            1.0, 1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 4.0, 6.0, 9.0, 1.0, -1.0, 0.5, 2.0, 1.0, -0.5, -2.0,
            0.25, 1.0, 4.0,
        ],
    );
    let mut p = PolynomialFeatures {
        interaction_only: true,
        include_bias: false,
        ..PolynomialFeatures::new(3)
    };
    close(
        p.fit_transform(&x2).unwrap().data(),
        &[
            1.0, 2.0, 3.0, 2.0, 3.0, 6.0, 6.0, -1.0, 0.5, 2.0, -0.5, -2.0, 1.0, -1.0,
        ],
    );
}

#[test]
fn binning_matches_sklearn() {
    let xb = Tensor::new(
        &[8, 2],
        vec![
            0., 1., 1., 1., 2., 2., 3., 3., 4., 5., 10., 8., 7., 13., 6., 21.,
        ],
    )
    .unwrap();
    let qb = Tensor::new(&[4, 2], vec![-1., 4., 3.3, 9., 20., 100., 5., 1.]).unwrap();
    let mut k = KBinsDiscretizer::new(3, BinStrategy::Uniform);
    k.fit(&xb).unwrap();
    close(
        &k.edges.concat(),
        &[
            0.0,
            3.3333333333333335,
            6.666666666666667,
            10.0,
            1.0,
            7.666666666666667,
            14.333333333333334,
            21.0,
        ],
    );
    close(
        k.transform(&qb).unwrap().data(),
        &[0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 1.0, 0.0],
    );
    let mut k = KBinsDiscretizer::new(4, BinStrategy::Quantile);
    k.fit(&xb).unwrap();
    close(
        &k.edges.concat(),
        &[0.0, 1.75, 3.5, 6.25, 10.0, 1.0, 1.75, 4.0, 9.25, 21.0],
    );
    close(
        k.transform(&qb).unwrap().data(),
        &[0.0, 2.0, 1.0, 2.0, 3.0, 3.0, 2.0, 0.0],
    );
}

#[test]
fn encoders_match_sklearn() {
    let c = strings(&[
        &["red", "S"],
        &["blue", "M"],
        &["red", "L"],
        &["green", "M"],
        &["red", "M"],
    ]);
    let y = [1.0, 3.0, 2.0, 10.0, 4.0];
    let mut o = OneHotEncoder::new(Unknown::Ignore(0.0));
    o.fit(&c).unwrap();
    assert_eq!(
        o.categories,
        strings(&[&["blue", "green", "red"], &["L", "M", "S"]])
    );
    close(
        o.transform(&strings(&[&["blue", "L"], &["purple", "S"]]))
            .unwrap()
            .data(),
        &[1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    );
    // The sparse form holds the same matrix.
    let sq = strings(&[&["blue", "L"], &["purple", "S"], &["red", "M"]]);
    let sp = o.transform_sparse(&sq).unwrap();
    sp.validate().unwrap();
    assert_eq!(sp.nnz(), 5); // "purple" is an ignored unknown
    assert_eq!(sp.indptr, [0, 2, 3, 5]);
    assert_eq!(sp.to_dense().unwrap(), o.transform(&sq).unwrap());
    let mut strict = OneHotEncoder::new(Unknown::Error);
    strict.fit(&c).unwrap();
    let e = strict.transform(&strings(&[&["purple", "S"]])).unwrap_err();
    assert!(
        e.to_string().contains("purple") && e.to_string().contains("column 0"),
        "{e}"
    );
    let mut ord = OrdinalEncoder::new(Unknown::Ignore(-1.0));
    ord.fit(&c).unwrap();
    close(
        ord.transform(&strings(&[&["green", "S"], &["x", "M"]]))
            .unwrap()
            .data(),
        &[1.0, 2.0, -1.0, 1.0],
    );
    let mut t = TargetEncoder::new(2.0);
    t.fit(&c, &y).unwrap();
    close(
        &t.encodings[0].values().copied().collect::<Vec<_>>(),
        &[3.6666666666666665, 6.0, 3.0],
    );
    close(
        &t.encodings[1].values().copied().collect::<Vec<_>>(),
        &[3.3333333333333335, 5.0, 3.0],
    );
    close(&[t.target_mean], &[4.0]);
    close(
        t.transform(&strings(&[&["blue", "L"], &["purple", "M"]]))
            .unwrap()
            .data(),
        &[3.6666666666666665, 3.3333333333333335, 4.0, 5.0],
    );
    let mut l = LabelEncoder::default();
    let labels: Vec<String> = ["b", "a", "c", "a"].iter().map(|s| s.to_string()).collect();
    l.fit(&labels);
    assert_eq!(l.transform(&labels).unwrap(), [1, 0, 2, 0]);
    assert_eq!(l.inverse(&[2, 0]).unwrap(), ["c", "a"]);
    assert!(l.transform(&["z".to_string()]).is_err());
}

#[test]
fn pipeline_state_round_trips_and_splits_follow_their_rules() {
    let mut p = Pipeline::new(vec![
        Step::Impute(SimpleImputer::new(Strategy::Median)),
        Step::Robust(RobustScaler::default()),
        Step::Poly(PolynomialFeatures::new(2)),
    ]);
    let a = p.fit_transform(&x()).unwrap();
    let text = serde_json::to_string(&p).unwrap();
    let back: Pipeline = serde_json::from_str(&text).unwrap();
    assert_eq!(back.transform(&x()).unwrap(), a);
    assert_eq!(a.shape(), [6, 10]);

    let labels: Vec<usize> = (0..100).map(|i| if i < 80 { 0 } else { 1 }).collect();
    let (tr, te) = train_test_split(100, 0.25, 7, Some(&labels)).unwrap();
    assert_eq!((tr.len(), te.len()), (75, 25));
    assert_eq!(te.iter().filter(|&&i| labels[i] == 1).count(), 5); // 20 % of 25
    let mut all: Vec<usize> = tr.iter().chain(&te).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert_eq!(
        train_test_split(100, 0.25, 7, Some(&labels)).unwrap(),
        (tr.clone(), te.clone())
    );
    assert_ne!(train_test_split(100, 0.25, 8, Some(&labels)).unwrap().1, te);
    let (tr2, te2) = train_test_split(10, 0.33, 1, None).unwrap();
    assert_eq!((tr2.len(), te2.len()), (6, 4)); // ceil(3.3)
    assert!(train_test_split(10, 1.0, 1, None).is_err());
    assert!(train_test_split(1, 0.5, 1, None).is_err());
}
