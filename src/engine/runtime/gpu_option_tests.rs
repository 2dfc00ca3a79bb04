use super::*;

fn get<'a>(options: &'a [(&str, String)], key: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn cuda_is_fp32_with_a_fixed_convolution_algorithm_unless_tf32_is_asked() {
    let fp32 = cuda_options(&GpuOptions::default());
    assert_eq!(get(&fp32, "use_tf32"), Some("0"));
    assert_eq!(get(&fp32, "cudnn_conv_algo_search"), Some("DEFAULT"));
    assert_eq!(get(&fp32, "device_id"), Some("0"));
    let tf32 = cuda_options(&GpuOptions {
        device: 3,
        tf32: true,
        fp16: false,
    });
    assert_eq!(get(&tf32, "use_tf32"), Some("1"));
    assert_eq!(get(&tf32, "device_id"), Some("3"));
    assert_eq!(precision(CUDA::NAME, &GpuOptions::default()), "fp32");
    assert!(precision(
        CUDA::NAME,
        &GpuOptions {
            tf32: true,
            ..Default::default()
        }
    )
    .starts_with("tf32"));
    assert_eq!(
        precision(
            CPU::NAME,
            &GpuOptions {
                tf32: true,
                fp16: true,
                device: 0
            }
        ),
        "fp32"
    );
}

#[test]
fn tensorrt_engines_are_keyed_by_content_and_share_the_timing_cache() {
    let gpu = GpuOptions {
        device: 1,
        tf32: false,
        fp16: true,
    };
    let profile = batch_profile("input", &[-1, 3, 224, 224], 224, TensorLayout::Nchw, 64);
    let options = tensorrt_options(&gpu, Path::new("/cache"), "abc123", profile.as_ref());
    assert_eq!(get(&options, "trt_engine_cache_prefix"), Some("abc123"));
    assert_eq!(get(&options, "trt_engine_cache_path"), Some("/cache"));
    assert_eq!(get(&options, "trt_timing_cache_path"), Some("/cache"));
    assert_eq!(get(&options, "trt_timing_cache_enable"), Some("1"));
    assert_eq!(get(&options, "trt_fp16_enable"), Some("1"));
    assert_eq!(get(&options, "device_id"), Some("1"));
    assert_eq!(
        get(&options, "trt_profile_min_shapes"),
        Some("input:1x3x224x224")
    );
    assert_eq!(
        get(&options, "trt_profile_opt_shapes"),
        Some("input:64x3x224x224")
    );
    assert_eq!(
        get(&options, "trt_profile_max_shapes"),
        Some("input:64x3x224x224")
    );
    let fp32 = tensorrt_options(&GpuOptions::default(), Path::new("/c"), "k", None);
    assert_eq!(get(&fp32, "trt_fp16_enable"), Some("0"));
    assert_eq!(get(&fp32, "trt_profile_min_shapes"), None);
}

#[test]
fn content_key_is_the_file_hash_or_covers_external_data() {
    assert_eq!(content_key("aa", &[]), "aa");
    let one = content_key("aa", &[("w.bin".into(), "01".into())]);
    let other = content_key("aa", &[("w.bin".into(), "02".into())]);
    assert_eq!(one.len(), 64);
    assert_ne!(one, other, "new external weights, new engine");
    assert_ne!(one, "aa");
}

#[test]
fn profiles_fill_dynamic_sides_and_skip_fixed_batches_and_unwritable_names() {
    let nhwc = batch_profile("x", &[-1, -1, -1, 3], 160, TensorLayout::Nhwc, 9).unwrap();
    assert_eq!(nhwc.min, "x:1x160x160x3");
    assert_eq!(nhwc.max, "x:9x160x160x3");
    assert_eq!(
        batch_profile("x", &[8, 3, 224, 224], 224, TensorLayout::Nchw, 64),
        None
    );
    assert_eq!(
        batch_profile("a:b", &[-1, 3, 224, 224], 224, TensorLayout::Nchw, 64),
        None
    );
    assert_eq!(
        batch_profile("a,b", &[-1, 3, 224, 224], 224, TensorLayout::Nchw, 64),
        None
    );
    assert_eq!(
        batch_profile("x", &[-1, 3, 224, 224], 224, TensorLayout::Nchw, 0),
        None
    );
}

#[test]
fn gpu_settings_that_cannot_take_effect_are_usage_errors() {
    let gpu_lib = vec![
        TensorRT::NAME.to_string(),
        CUDA::NAME.to_string(),
        CPU::NAME.to_string(),
    ];
    let cuda_lib = vec![CUDA::NAME.to_string(), CPU::NAME.to_string()];
    let cpu_lib = vec![CPU::NAME.to_string()];
    let fp16 = GpuOptions {
        fp16: true,
        ..Default::default()
    };
    let usage = |r: Result<()>| matches!(r, Err(Error::Usage(_)));
    // --fp16 is TensorRT's alone: refused on the CPU, on CUDA, and under auto without TensorRT.
    for (choice, lib) in [
        (ProviderChoice::Cpu, &gpu_lib),
        (ProviderChoice::Auto, &cpu_lib),
        (ProviderChoice::Cuda, &gpu_lib),
        (ProviderChoice::Auto, &cuda_lib),
    ] {
        assert!(
            usage(check_gpu_options(choice, &fp16, lib, None)),
            "{choice:?}"
        );
    }
    assert!(check_gpu_options(ProviderChoice::Tensorrt, &fp16, &gpu_lib, None).is_ok());
    let tf32 = GpuOptions {
        tf32: true,
        ..Default::default()
    };
    assert!(usage(check_gpu_options(
        ProviderChoice::Cpu,
        &tf32,
        &gpu_lib,
        None
    )));
    assert!(check_gpu_options(ProviderChoice::Cuda, &tf32, &cuda_lib, None).is_ok());
    let device2 = GpuOptions {
        device: 2,
        ..Default::default()
    };
    assert!(usage(check_gpu_options(
        ProviderChoice::Cuda,
        &device2,
        &cuda_lib,
        Some(2)
    )));
    assert!(check_gpu_options(ProviderChoice::Cuda, &device2, &cuda_lib, Some(3)).is_ok());
    assert!(
        check_gpu_options(ProviderChoice::Cuda, &device2, &cuda_lib, None).is_ok(),
        "unknown count: the provider says"
    );
    assert!(usage(check_gpu_options(
        ProviderChoice::Cpu,
        &device2,
        &gpu_lib,
        None
    )));
    // The default device with no GPU visible: auto falls back to the CPU, cuda is told now.
    let default = GpuOptions::default();
    assert!(check_gpu_options(ProviderChoice::Auto, &default, &cuda_lib, Some(0)).is_ok());
    assert!(usage(check_gpu_options(
        ProviderChoice::Cuda,
        &default,
        &cuda_lib,
        Some(0)
    )));
}

#[test]
fn placement_is_read_from_the_session_log_and_names_what_ran() {
    let lines = vec![
        "Node placements".to_string(),
        " Node(s) placed on [CUDAExecutionProvider]. Number of nodes: 88".to_string(),
        " Node(s) placed on [CPUExecutionProvider]. Number of nodes: 5".to_string(),
    ];
    let placement = parse_placement(&lines);
    assert_eq!(
        placement,
        vec![
            ("CUDAExecutionProvider".to_string(), 88),
            ("CPUExecutionProvider".to_string(), 5)
        ]
    );
    assert_eq!(
        ran_on(CUDA::NAME, &placement),
        "CUDAExecutionProvider+CPUExecutionProvider"
    );
    let all_cpu = parse_placement(&[
        "All nodes placed on [CPUExecutionProvider]. Number of nodes: 93".to_string(),
    ]);
    assert_eq!(ran_on(CPU::NAME, &all_cpu), "CPUExecutionProvider");
    assert_eq!(
        ran_on(TensorRT::NAME, &Vec::new()),
        "TensorrtExecutionProvider"
    );
}

#[test]
fn auto_tries_the_providers_in_the_library_then_the_cpu() {
    let lib = vec![CUDA::NAME.to_string(), CPU::NAME.to_string()];
    assert_eq!(
        attempts(ProviderChoice::Auto, &lib),
        vec![ProviderChoice::Cuda, ProviderChoice::Cpu]
    );
    assert_eq!(
        attempts(ProviderChoice::Tensorrt, &lib),
        vec![ProviderChoice::Tensorrt]
    );
}
