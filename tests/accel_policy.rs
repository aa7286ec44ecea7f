//! The selection policy on synthetic adapter lists, and its settings.

use percore::accelerator::{
    AccelBackend, AccelError, AccelOptions, AdapterInfo, ApiSet, DeviceKind, KeyLimits, choose,
};
use proptest::prelude::*;

fn adapter(name: &str, kind: DeviceKind) -> AdapterInfo {
    AdapterInfo {
        name: name.into(),
        backend: "vulkan".into(),
        kind,
        driver: String::new(),
        vendor: 0,
        device: 0,
        limits: KeyLimits {
            max_storage_buffer_binding_size: 1 << 27,
            max_buffer_size: 1 << 28,
            max_compute_workgroups_per_dimension: 65535,
            max_compute_invocations_per_workgroup: 256,
            max_compute_workgroup_storage_size: 16384,
            max_storage_buffers_per_shader_stage: 8,
        },
    }
}

fn kind() -> impl Strategy<Value = DeviceKind> {
    prop_oneof![
        Just(DeviceKind::Discrete),
        Just(DeviceKind::Integrated),
        Just(DeviceKind::Virtual),
        Just(DeviceKind::Software),
        Just(DeviceKind::Other),
    ]
}

proptest! {
    /// Auto: the first discrete GPU, else the first integrated one, else the CPU backend.
    #[test]
    fn auto_prefers_discrete_then_integrated(kinds in proptest::collection::vec(kind(), 0..8)) {
        let list: Vec<_> = kinds.iter().enumerate().map(|(i, k)| adapter(&format!("a{i}"), *k)).collect();
        let s = choose(AccelBackend::Auto, &list);
        let want = kinds.iter().position(|k| *k == DeviceKind::Discrete)
            .or_else(|| kinds.iter().position(|k| *k == DeviceKind::Integrated));
        prop_assert_eq!(s.adapter, want);
        prop_assert!(!s.degraded);
        if let Some(i) = s.adapter {
            prop_assert!(s.reason.contains(&list[i].name));
        }
    }

    /// Gpu: any adapter, best kind first; none at all is the degraded CPU fallback.
    #[test]
    fn gpu_takes_the_best_adapter_of_any_kind(kinds in proptest::collection::vec(kind(), 0..8)) {
        let list: Vec<_> = kinds.iter().enumerate().map(|(i, k)| adapter(&format!("a{i}"), *k)).collect();
        let s = choose(AccelBackend::Gpu, &list);
        prop_assert_eq!(s.adapter.is_none(), list.is_empty());
        prop_assert_eq!(s.degraded, list.is_empty());
        if let Some(i) = s.adapter {
            let rank = |k: DeviceKind| [DeviceKind::Discrete, DeviceKind::Integrated, DeviceKind::Virtual, DeviceKind::Software, DeviceKind::Other].iter().position(|x| *x == k);
            prop_assert!(kinds.iter().all(|k| rank(*k) >= rank(kinds[i])));
            prop_assert!(kinds[..i].iter().all(|k| rank(*k) > rank(kinds[i])));
        }
        let c = choose(AccelBackend::Cpu, &list);
        prop_assert_eq!(c.adapter, None);
        prop_assert!(!c.degraded);
    }
}

#[test]
fn software_adapters_only_when_asked() {
    let list = vec![adapter("llvmpipe", DeviceKind::Software)];
    assert_eq!(choose(AccelBackend::Auto, &list).adapter, None);
    assert_eq!(choose(AccelBackend::Gpu, &list).adapter, Some(0));
}

#[test]
fn percore_accel_parses_or_names_the_variable() {
    let env = |v: &'static str| move |k: &str| (k == "PERCORE_ACCEL").then(|| v.to_string());
    assert_eq!(
        AccelBackend::from_env_with(|_| None),
        Ok(AccelBackend::Auto)
    );
    assert_eq!(
        AccelBackend::from_env_with(env("GPU")),
        Ok(AccelBackend::Gpu)
    );
    assert_eq!(
        AccelBackend::from_env_with(env(" cpu ")),
        Ok(AccelBackend::Cpu)
    );
    assert_eq!(
        AccelBackend::from_env_with(env("auto")),
        Ok(AccelBackend::Auto)
    );
    match AccelBackend::from_env_with(env("cuda")) {
        Err(AccelError::InvalidSetting { setting, value, .. }) => {
            assert_eq!(setting, "PERCORE_ACCEL");
            assert_eq!(value, "cuda");
        }
        other => panic!("{other:?}"),
    }
    let o = AccelOptions::from_env_with(|k| match k {
        "PERCORE_ACCEL" => Some("gpu".into()),
        "WGPU_BACKEND" => Some("vulkan,gl".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(o.backend, AccelBackend::Gpu);
    assert_eq!(o.apis, ApiSet::VULKAN.union(ApiSet::GL));
    assert!(!o.apis.contains(ApiSet::METAL));
    assert!(
        "opengl,dx12"
            .parse::<ApiSet>()
            .unwrap()
            .contains(ApiSet::DX12)
    );
    assert!("glide".parse::<ApiSet>().is_err());
}
