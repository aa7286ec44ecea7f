//! Several steps of each optimizer against the published update rules (PyTorch's
//! documented pseudocode), computed independently in scalar float64 Python by
//! `tests/reference/ml_optim.py` (run it to regenerate): parameter `[0.5, -1.5, 2.0]`, the
//! gradients of [`testing::grad`]. Our `f32` arithmetic is held to 1e-5 relative.

use super::testing::{assert_close, run};
use super::*;

const REL: f64 = 1e-5;

#[test]
fn sgd_matches_the_published_rule_with_momentum_weight_decay_nesterov_dampening() {
    let mut o = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.01,
        ..SgdConfig::default()
    });
    assert_close(
        &run(&mut o, 4),
        &[
            [0.4894999998509884, -1.468499998807907, 1.898],
            [0.44956049852493407, -1.423681497140169, 1.7543019999999998],
            [0.36316538683296024, -1.3819211641420646, 1.6232194979999999],
            [0.2150466221154437, -1.357954943875675, 1.5536220267019998],
        ],
        REL,
    );
    let mut o = Sgd::checked(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        nesterov: true,
        ..SgdConfig::default()
    })
    .unwrap();
    assert_close(
        &run(&mut o, 4),
        &[
            [0.48099999971687796, -1.4429999977350234, 1.81],
            [0.41589999733120203, -1.39019999563694, 1.6340000000000001],
            [0.2893099962569773, -1.3561799942851067, 1.5206000000000002],
            [0.08737899755515155, -1.3540619942009449, 1.51354],
        ],
        REL,
    );
    let mut o = Sgd::new(SgdConfig {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.5,
        ..SgdConfig::default()
    });
    assert_close(
        &run(&mut o, 4),
        &[
            [0.4899999998509884, -1.469999998807907, 1.9],
            [0.4659999991208315, -1.4354999974370002, 1.785],
            [0.4193999984636903, -1.404449996203184, 1.6815],
            [0.34245999846830966, -1.3840049953907727, 1.61335],
        ],
        REL,
    );
    let mut o = Sgd::new(SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    });
    assert_close(
        &run(&mut o, 4),
        &[
            [0.4899999998509884, -1.469999998807907, 1.9],
            [0.4599999986588955, -1.4549999982118607, 1.8499999999999999],
            [0.4099999986588955, -1.4549999982118607, 1.8499999999999999],
            [0.3399999998509884, -1.469999998807907, 1.9],
        ],
        REL,
    );
    assert!(
        Sgd::<f32>::checked(SgdConfig {
            nesterov: true,
            ..SgdConfig::default()
        })
        .is_err()
    );
}

#[test]
fn adam_amsgrad_and_adamw_match_the_published_rules() {
    let mut o = Adam::new(AdamConfig {
        lr: 0.1,
        ..AdamConfig::default()
    });
    assert_close(
        &run(&mut o, 4),
        &[
            [0.40000000999999885, -1.400000003333333, 1.900000001],
            [0.3082219025038615, -1.306782043383197, 1.8067820382981612],
            [0.216317158322839, -1.2347242908508878, 1.7347242831600769],
            [0.12334440729650395, -1.2046065443136305, 1.7046065354747595],
        ],
        REL,
    );
    let mut o = Adam::new(AdamConfig {
        lr: 0.1,
        weight_decay: 0.1,
        amsgrad: true,
        ..AdamConfig::default()
    });
    assert_close(
        &run(&mut o, 4),
        &[
            [0.40000000666666613, -1.400000002222222, 1.9000000008333333],
            [0.3048771399411315, -1.3033608797669982, 1.8048124339435732],
            [0.21037485238479914, -1.2156588191109465, 1.7235845100514684],
            [0.11541914452557006, -1.146913220645872, 1.6721083426437156],
        ],
        REL,
    );
    let mut o = Adam::new(AdamConfig {
        lr: 0.1,
        weight_decay: 0.1,
        ..AdamConfig::adamw()
    });
    assert_close(
        &run(&mut o, 4),
        &[
            [0.39500000999999885, -1.385000003333333, 1.880000001],
            [0.2992719024038615, -1.2779320433498635, 1.7679820382881613],
            [0.20437443919880033, -1.1930949703840557, 1.6782444627671953],
            [0.10935794378047728, -1.1510462741429577, 1.631344270454206],
        ],
        REL,
    );
}

#[test]
fn rmsprop_plain_and_centered_with_momentum_match_the_published_rule() {
    let mut o = RmsProp::new(RmsPropConfig::default());
    assert_close(
        &run(&mut o, 4),
        &[
            [0.40000009999989855, -1.400000033333321, 1.900000009999999],
            [0.3050843302210659, -1.3550987212674828, 1.855098688525563],
            [0.2204359174523198, -1.3550987212674828, 1.855098688525563],
            [0.14385022639037118, -1.3964037618634444, 1.8964037370833555],
        ],
        REL,
    );
    let mut o = RmsProp::new(RmsPropConfig {
        centered: true,
        momentum: 0.5,
        weight_decay: 0.1,
        ..RmsPropConfig::default()
    });
    assert_close(
        &run(&mut o, 4),
        &[
            [0.3994962858141004, -1.3994962409207623, 1.8994962268915865],
            [0.2568773808623663, -1.294364396778139, 1.7987411016602013],
            [0.10272071026728208, -1.2178082132428092, 1.7352217554162543],
            [
                -0.04990365661877172,
                -1.1847745446791933,
                1.7267004235764236,
            ],
        ],
        REL,
    );
}

#[test]
fn adagrad_with_decay_and_initial_accumulator_matches_the_published_rule() {
    let mut o = Adagrad::new(AdagradConfig {
        lr: 0.1,
        lr_decay: 0.01,
        weight_decay: 0.1,
        initial_accumulator_value: 0.1,
        ..AdagradConfig::default()
    });
    assert_close(
        &run(&mut o, 4),
        &[
            [0.45714285680755307, -1.4181818174801846, 1.9033012443247466],
            [0.3875648800538507, -1.3717766139134127, 1.8551696394801196],
            [0.31516738832350555, -1.350682271315136, 1.8424696439812673],
            [0.24642498227327692, -1.3529554732662616, 1.863373345650513],
        ],
        REL,
    );
}

#[test]
fn saved_state_resumes_bit_for_bit_through_json() {
    let grads = |s: usize| Tensor::new(&[3], testing::grad(s)).unwrap();
    let mk = || {
        Adam::<f32>::new(AdamConfig {
            lr: 0.05,
            amsgrad: true,
            ..AdamConfig::default()
        })
    };
    // Straight through: 6 steps.
    let mut a = mk();
    let mut pa = Param::new(Tensor::new(&[3], vec![0.5f32, -1.5, 2.0]).unwrap());
    for s in 0..6 {
        pa.grad = grads(s);
        a.step(&mut [&mut pa]).unwrap();
    }
    // 3 steps, save (through JSON text), a new optimizer loads it, 3 more.
    let mut b = mk();
    let mut pb = Param::new(Tensor::new(&[3], vec![0.5f32, -1.5, 2.0]).unwrap());
    for s in 0..3 {
        pb.grad = grads(s);
        b.step(&mut [&mut pb]).unwrap();
    }
    let text = serde_json::to_string(&b.save()).unwrap();
    let mut c = mk();
    c.load(serde_json::from_str(&text).unwrap()).unwrap();
    for s in 3..6 {
        pb.grad = grads(s);
        c.step(&mut [&mut pb]).unwrap();
    }
    let bits = |p: &Param<f32>| {
        p.value
            .data()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&pa), bits(&pb));
    // Another kind refuses it.
    let mut s = Sgd::<f32>::new(SgdConfig::default());
    assert!(s.load(serde_json::from_str(&text).unwrap()).is_err());
}

#[test]
fn parameter_groups_have_their_own_rates_and_clipping_follows_torch() {
    let mut a = Param::new(Tensor::new(&[2], vec![1.0f32, 1.0]).unwrap());
    let mut b = Param::new(Tensor::new(&[2], vec![1.0f32, 1.0]).unwrap());
    let mut o = Sgd::<f32>::new(SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    });
    o.groups_mut()[0].params = None;
    let mut groups = o.groups().to_vec();
    groups.insert(
        0,
        ParamGroup {
            params: Some(vec![1]),
            lr: 0.5,
            weight_decay: 0.0,
        },
    );
    let mut o2 = Sgd::<f32>::new(SgdConfig {
        lr: 0.1,
        ..SgdConfig::default()
    });
    let st = OptimState {
        kind: "sgd".into(),
        groups,
        slots: Vec::new(),
    };
    o2.load(st).unwrap();
    a.grad = Tensor::new(&[2], vec![1.0, 1.0]).unwrap();
    b.grad = Tensor::new(&[2], vec![1.0, 1.0]).unwrap();
    o2.step(&mut [&mut a, &mut b]).unwrap();
    assert_eq!(a.value.data(), [0.9, 0.9]);
    assert_eq!(b.value.data(), [0.5, 0.5]);
    // clip_grad_norm: grads (3, 4) and (0, 0): norm 5, clipped to 1 -> scaled by 1 / (5 + 1e-6).
    a.grad = Tensor::new(&[2], vec![3.0, 4.0]).unwrap();
    b.grad = Tensor::new(&[2], vec![0.0, 0.0]).unwrap();
    let n = clip_grad_norm(&mut [&mut a, &mut b], 1.0).unwrap();
    assert!((n - 5.0).abs() < 1e-12);
    let c = (1.0 / (5.0 + 1e-6)) as f32;
    assert_eq!(a.grad.data(), [3.0 * c, 4.0 * c]);
    // Under the limit nothing changes.
    assert_eq!(
        clip_grad_norm(&mut [&mut a], 10.0).unwrap() as f32,
        (3.0f32 * c).hypot(4.0 * c)
    );
    assert_eq!(a.grad.data(), [3.0 * c, 4.0 * c]);
    a.grad = Tensor::new(&[2], vec![-3.0, 0.25]).unwrap();
    clip_grad_value(&mut [&mut a], 0.5).unwrap();
    assert_eq!(a.grad.data(), [-0.5, 0.25]);
    assert!(clip_grad_norm(&mut [&mut a], f64::NAN).is_err());
}
