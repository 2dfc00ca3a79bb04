//! The CUDA, cuBLAS, cuDNN, cuFFT, cuRAND and TensorRT libraries as the PyPI wheels ship them,
//! loaded before ONNX Runtime creates its first GPU session.
//!
//! onnxruntime-gpu leaves these libraries out of itself: `nvidia-*` wheels put them in
//! `site-packages/nvidia/<component>/lib` (`nvidia/cu13/lib` for CUDA 13's consolidated wheel)
//! and TensorRT's in `site-packages/tensorrt_libs`, none of them on the loader's search path. The
//! Python package finds them with `onnxruntime.preload_dlls()`, which opens each one globally so
//! that the provider library's `NEEDED` entries resolve to the copies already loaded. This module
//! does the same for a process that loads `libonnxruntime.so` without Python.

use std::path::{Path, PathBuf};

/// Libraries in the order `preload_dlls` opens them (cublas needs cublasLt first), then cuDNN's
/// main library (it opens its own sub-libraries from its folder), then TensorRT's. Each entry is
/// a soname prefix: the file is `<prefix><major>`.
pub const PRELOAD_ORDER: &[&str] = &[
    "libcublasLt.so.",
    "libcublas.so.",
    "libnvrtc.so.",
    "libcurand.so.",
    "libcufft.so.",
    "libcudart.so.",
    "libcudnn.so.",
    "libnvinfer.so.",
    "libnvinfer_plugin.so.",
    "libnvonnxparser.so.",
];

/// What the preload found and did, for `doctor` and for error messages.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Preload {
    /// Why nothing was attempted, if nothing was (a CPU-only library, no site-packages).
    pub skipped: Option<String>,
    /// Folders searched, in order.
    pub searched: Vec<PathBuf>,
    /// Libraries opened, in order.
    pub loaded: Vec<PathBuf>,
    /// Libraries found that could not be opened, with the loader's reason.
    pub failed: Vec<(PathBuf, String)>,
    /// Libraries of `PRELOAD_ORDER` found in no searched folder.
    pub missing: Vec<String>,
}

/// The `site-packages` folder of a library inside an onnxruntime wheel
/// (`site-packages/onnxruntime/capi/libonnxruntime.so.X`), if it is one.
pub fn site_packages_of(library: &Path) -> Option<PathBuf> {
    let capi = library.parent()?;
    let package = capi.parent()?;
    (capi.file_name()? == "capi" && package.file_name()? == "onnxruntime")
        .then(|| package.parent().map(Path::to_path_buf))
        .flatten()
}

/// Library folders of the NVIDIA wheels under `site_packages`: `nvidia/*/lib` (sorted), then
/// `tensorrt_libs`.
pub fn library_dirs(site_packages: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(site_packages.join("nvidia"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join("lib"))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    let trt = site_packages.join("tensorrt_libs");
    if trt.is_dir() {
        dirs.push(trt);
    }
    dirs
}

/// The CUDA major version the wheel was built for (`cuda_version = '13.0'` in
/// `capi/build_and_package_info.py`), so a folder holding two majors gives the right one.
pub fn wheel_cuda_major(capi: &Path) -> Option<String> {
    let text = std::fs::read_to_string(capi.join("build_and_package_info.py")).ok()?;
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("cuda_version"))?;
    let value = line.split('=').nth(1)?.trim().trim_matches(['\'', '"']);
    let major: String = value.chars().take_while(char::is_ascii_digit).collect();
    (!major.is_empty()).then_some(major)
}

/// Per entry of `PRELOAD_ORDER`, the file to open: `<prefix><major>` (a whole-number suffix, the
/// soname), preferring `cuda_major` where the CUDA libraries come in several majors, else the
/// newest. `files` are (folder, file name) pairs; pure, so it is tested without a GPU.
pub fn choose(
    files: &[(PathBuf, String)],
    cuda_major: Option<&str>,
) -> Vec<(&'static str, Option<PathBuf>)> {
    PRELOAD_ORDER
        .iter()
        .map(|prefix| {
            let mut matches: Vec<(u32, PathBuf, &str)> = files
                .iter()
                .filter_map(|(dir, name)| {
                    let major = name.strip_prefix(prefix)?;
                    let n: u32 = major.parse().ok()?;
                    Some((n, dir.join(name), major))
                })
                .collect();
            matches.sort_by_key(|m| std::cmp::Reverse(m.0));
            let preferred =
                cuda_major.and_then(|m| matches.iter().find(|(_, _, major)| *major == m));
            let pick = preferred
                .or(matches.first())
                .map(|(_, path, _)| path.clone());
            (*prefix, pick)
        })
        .collect()
}

/// Open every library the wheels beside `library` ship, globally, before ONNX Runtime is
/// initialised. Only a GPU build is served (its `capi/` holds a CUDA or TensorRT provider): a
/// CPU-only run loads no CUDA library, whatever else the environment holds.
pub fn preload_beside(library: &Path) -> Preload {
    let mut report = Preload::default();
    let Some(site) = site_packages_of(library) else {
        report.skipped = Some(format!(
            "{} is not inside an onnxruntime wheel (site-packages/onnxruntime/capi); \
             CUDA libraries come from the system's loader path",
            library.display()
        ));
        return report;
    };
    let capi = library.parent().unwrap_or(Path::new("."));
    let gpu_build = [
        "libonnxruntime_providers_cuda.so",
        "libonnxruntime_providers_tensorrt.so",
    ]
    .iter()
    .any(|p| capi.join(p).is_file());
    if !gpu_build {
        report.skipped = Some("a CPU-only onnxruntime build: no CUDA library is needed".into());
        return report;
    }
    report.searched = library_dirs(&site);
    let mut files = Vec::new();
    for dir in &report.searched {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                files.push((dir.clone(), e.file_name().to_string_lossy().into_owned()));
            }
        }
    }
    for (prefix, pick) in choose(&files, wheel_cuda_major(capi).as_deref()) {
        match pick {
            None => report.missing.push(format!("{prefix}*")),
            Some(path) => match open_global(&path) {
                Ok(()) => report.loaded.push(path),
                Err(e) => report.failed.push((path, e)),
            },
        }
    }
    report
}

/// dlopen with RTLD_GLOBAL, kept open for the life of the process: ONNX Runtime's provider
/// libraries resolve their `NEEDED` CUDA libraries against the global scope.
fn open_global(path: &Path) -> Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: the NVIDIA libraries' initialisers only register themselves; nothing is called.
    let lib =
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| e.to_string())?;
    // Never unloaded: the provider library holds pointers into it.
    std::mem::forget(lib);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(names: &[(&str, &str)]) -> Vec<(PathBuf, String)> {
        names
            .iter()
            .map(|(d, n)| (PathBuf::from(d), n.to_string()))
            .collect()
    }

    #[test]
    fn sonames_in_preload_order_and_the_wheel_cuda_major_preferred() {
        let found = files(&[
            ("cu12", "libcublas.so.12"),
            ("cu13", "libcublas.so.13"),
            ("cu13", "libcublas.so.13.1.0"),
            ("cu13", "libcublasLt.so.13"),
            ("cudnn", "libcudnn.so.9"),
            ("cudnn", "libcudnn_ops.so.9"),
        ]);
        let picks = choose(&found, Some("12"));
        let get = |p: &str| picks.iter().find(|(q, _)| *q == p).unwrap().1.clone();
        assert_eq!(
            get("libcublas.so."),
            Some(PathBuf::from("cu12/libcublas.so.12"))
        );
        // No major 12 of cublasLt: the newest there is.
        assert_eq!(
            get("libcublasLt.so."),
            Some(PathBuf::from("cu13/libcublasLt.so.13"))
        );
        assert_eq!(
            get("libcudnn.so."),
            Some(PathBuf::from("cudnn/libcudnn.so.9"))
        );
        assert_eq!(get("libcudart.so."), None);
        let newest = choose(&found, None);
        assert_eq!(newest[1].1, Some(PathBuf::from("cu13/libcublas.so.13")));
        assert_eq!(
            newest[0].0, "libcublasLt.so.",
            "cublasLt is opened before cublas"
        );
    }

    #[test]
    fn the_wheel_layout_is_recognised() {
        let lib =
            Path::new("/v/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1");
        assert_eq!(
            site_packages_of(lib),
            Some(PathBuf::from("/v/lib/python3.11/site-packages"))
        );
        assert_eq!(
            site_packages_of(Path::new("/usr/lib/libonnxruntime.so")),
            None
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("build_and_package_info.py"),
            "package_name = 'onnxruntime-gpu'\ncuda_version = '13.0'\n",
        )
        .unwrap();
        assert_eq!(wheel_cuda_major(dir.path()).as_deref(), Some("13"));
    }
}
