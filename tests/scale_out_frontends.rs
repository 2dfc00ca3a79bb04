//! `robust-eval slurm` and `robust-eval kubernetes` without a scheduler: the scripts and manifests
//! they write (read back by bash and by PyYAML), the commands `--submit` runs (a stand-in sbatch
//! on PATH records them), and the refusals. The real Slurm run is scripts/test_slurm.sh.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use predicates::prelude::*;

/// An argument no shell, sbatch line or YAML document may reinterpret.
const AWKWARD: &str = "it's $HOME \"quoted\" `date` ; # x: [y]\nsecond line";

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A stand-in robust-eval that writes the arguments it was given, NUL-separated, to $ARGS_FILE.
fn recorder(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("recorder");
    executable(&path, "#!/bin/sh\nprintf '%s\\0' \"$@\" > \"$ARGS_FILE\"\n");
    path
}

fn recorded(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    text.split_terminator('\0').map(str::to_string).collect()
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_string)
        .collect()
}

fn bash_n(script: &Path) {
    let status = Command::new("bash").arg("-n").arg(script).status().unwrap();
    assert!(status.success(), "bash -n {}", script.display());
}

#[test]
fn slurm_scripts_hold_the_array_and_pass_every_argument_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("results here");
    let program = recorder(dir.path());
    bin()
        .current_dir(dir.path())
        .args([
            "slurm",
            "--shards",
            "4",
            "--partition",
            "gpu",
            "--time",
            "1:00:00",
        ])
        .args([
            "--gpus-per-task",
            "1",
            "--cpus-per-task",
            "8",
            "--mem",
            "16G",
        ])
        .args(["--job-name", "nightly eval", "--sbatch=--qos=high"])
        .arg("--program")
        .arg(&program)
        .args([
            "--",
            "--suite",
            "demo",
            "--threads",
            "8",
            "--baseline",
            AWKWARD,
        ])
        .arg("--out")
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "sbatch --parsable --dependency=afterok:",
        ));

    let shards = out.join("slurm").join("shards.sbatch");
    let merge = out.join("slurm").join("merge.sbatch");
    let text = lines(&shards);
    let slurm_dir = out.join("slurm");
    for expected in [
        "#!/bin/bash".to_string(),
        "#SBATCH --array=0-3".into(),
        format!("#SBATCH --output=\"{}/shard-%a.out\"", slurm_dir.display()),
        "#SBATCH --job-name=\"nightly eval\"".into(),
        "#SBATCH --partition=gpu".into(),
        "#SBATCH --time=1:00:00".into(),
        "#SBATCH --gpus-per-task=1".into(),
        "#SBATCH --cpus-per-task=8".into(),
        "#SBATCH --mem=16G".into(),
        "#SBATCH --qos=high".into(),
        "#SBATCH --requeue".into(),
        "#SBATCH --ntasks=1".into(),
        format!(
            "#SBATCH --chdir={}",
            dir.path().canonicalize().unwrap().display()
        ),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in {text:#?}");
    }
    let merge_text = lines(&merge);
    assert!(merge_text.contains(&"#SBATCH --job-name=\"nightly eval-merge\"".to_string()));
    assert!(merge_text.contains(&"#SBATCH --kill-on-invalid-dep=yes".to_string()));
    assert!(!merge_text
        .iter()
        .any(|l| l.contains("--array") || l.contains("--gpus")));
    bash_n(&shards);
    bash_n(&merge);

    // Run both scripts as Slurm would (bash, the array variables set): the program must receive
    // exactly the words given, the awkward one included.
    let args_file = dir.path().join("args");
    let run_script = |script: &Path| {
        let status = Command::new("bash")
            .arg(script)
            .env("ARGS_FILE", &args_file)
            .env("SLURM_ARRAY_TASK_ID", "2")
            .env("SLURM_ARRAY_JOB_ID", "77")
            .status()
            .unwrap();
        assert!(status.success(), "bash {}", script.display());
        recorded(&args_file)
    };
    let out_text = out.display().to_string();
    let expected: Vec<String> = [
        "run",
        "--suite",
        "demo",
        "--threads",
        "8",
        "--baseline",
        AWKWARD,
        "--out",
        &out_text,
        "--shard",
        "auto",
        "--shard-count",
        "4",
    ]
    .map(str::to_string)
    .to_vec();
    assert_eq!(run_script(&shards), expected);
    // The merge gets the run's analysis flags, so its fit is the one one run would make.
    let merge_expected = ["merge", &out_text, "--baseline", AWKWARD].map(str::to_string);
    assert_eq!(run_script(&merge), merge_expected);

    // GPUs asked for and the provider `auto`: the engine job comes first, with a shard's
    // resources, running the shards' run whole with --engines-only; a failed one holds the array.
    let engines = slurm_dir.join("engines.sbatch");
    let engines_text = lines(&engines);
    for expected in [
        "#SBATCH --job-name=\"nightly eval-engines\"",
        "#SBATCH --gpus-per-task=1",
        "#SBATCH --cpus-per-task=8",
        "#SBATCH --ntasks=1",
        "#SBATCH --partition=gpu",
    ] {
        assert!(
            engines_text.contains(&expected.to_string()),
            "no {expected:?} in {engines_text:#?}"
        );
    }
    assert!(text.contains(&"#SBATCH --kill-on-invalid-dep=no".to_string()));
    bash_n(&engines);
    let mut engines_expected = expected[..9].to_vec();
    engines_expected.push("--engines-only".into());
    assert_eq!(run_script(&engines), engines_expected);
}

#[test]
fn submit_sends_the_engine_job_then_the_array_after_it_then_the_merge() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = fake_sbatch(dir.path(), &["40", "41;cluster", "42"], None);
    let assert = bin()
        .env("PATH", &path)
        .args([
            "slurm",
            "--shards",
            "3",
            "--gpus-per-task",
            "1",
            "--submit",
            "--json",
        ])
        .args(["--", "--suite", "demo", "--out"])
        .arg(&out)
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(json["submitted"]["engines_job"], "40");
    assert_eq!(json["submitted"]["array_job"], "41");
    assert_eq!(json["submitted"]["merge_job"], "42");
    let slurm = out.join("slurm");
    assert_eq!(
        lines(&dir.path().join("sbatch-calls")),
        vec![
            format!("--parsable {}", slurm.join("engines.sbatch").display()),
            format!(
                "--parsable --dependency=afterok:40 {}",
                slurm.join("shards.sbatch").display()
            ),
            format!(
                "--parsable --dependency=afterok:41 {}",
                slurm.join("merge.sbatch").display()
            ),
        ]
    );
    // The commands printed for submitting by hand chain the same way.
    let commands: Vec<String> = json["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert!(
        commands[0].starts_with("engines=$(sbatch --parsable "),
        "{commands:?}"
    );
    assert!(
        commands[1].starts_with("array=$(sbatch --parsable --dependency=afterok:${engines%%;*} "),
        "{commands:?}"
    );
}

#[test]
fn the_engine_job_is_left_out_on_request_or_for_providers_without_engines() {
    let dir = tempfile::tempdir().unwrap();
    let write = |out: &str, engine_job: &str, provider: &str| {
        bin()
            .current_dir(dir.path())
            .args([
                "slurm",
                "--shards",
                "2",
                "--gpus-per-task",
                "1",
                "--engine-job",
            ])
            .args([
                engine_job,
                "--",
                "--suite",
                "demo",
                "--provider",
                provider,
                "--out",
                out,
            ])
            .assert()
    };
    write("no", "no", "auto").success();
    write("cuda", "auto", "cuda").success();
    for out in ["no", "cuda"] {
        let slurm = dir.path().join(out).join("slurm");
        assert!(slurm.join("shards.sbatch").is_file());
        assert!(!slurm.join("engines.sbatch").exists(), "{out}");
        assert!(!lines(&slurm.join("shards.sbatch"))
            .contains(&"#SBATCH --kill-on-invalid-dep=no".into()));
    }
    write("trt", "auto", "tensorrt").success();
    assert!(dir.path().join("trt/slurm/engines.sbatch").is_file());
    // `yes` where the shards build no engines is bad input: nothing is written.
    write("cpu", "yes", "cpu")
        .code(2)
        .stderr(predicate::str::contains("--engine-job yes"));
    assert!(!dir.path().join("cpu").exists());
    // The engine job's flag is the front end's to pass, not the user's.
    bin()
        .current_dir(dir.path())
        .args([
            "slurm",
            "--shards",
            "2",
            "--",
            "--suite",
            "demo",
            "--engines-only",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--engines-only"));
}

#[test]
fn slurm_out_defaults_to_the_suites_folder_made_absolute() {
    let dir = tempfile::tempdir().unwrap();
    bin()
        .current_dir(dir.path())
        .args(["slurm", "--shards", "2", "--", "--suite", "demo"])
        .assert()
        .success();
    let out = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("results")
        .join("demo");
    let merge = lines(&out.join("slurm").join("merge.sbatch"));
    let last = merge.last().unwrap();
    assert!(
        last.ends_with(&format!(" merge {}", out.display())),
        "{last}"
    );
    assert!(lines(&out.join("slurm").join("shards.sbatch")).contains(&"#SBATCH --array=0-1".into()));
}

/// A stand-in sbatch: records each call's arguments (one call per line) and prints the next id.
fn fake_sbatch(dir: &Path, ids: &[&str], fail_on_call: Option<usize>) -> std::path::PathBuf {
    let bin_dir = dir.join("fake-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let calls = dir.join("sbatch-calls");
    let mut script = format!(
        "#!/bin/sh\nPATH=/usr/bin:/bin\necho \"$*\" >> '{}'\nn=$(wc -l < '{}')\n",
        calls.display(),
        calls.display()
    );
    if let Some(k) = fail_on_call {
        script.push_str(&format!(
            "if [ \"$n\" = {k} ]; then echo 'sbatch: error: Invalid partition name specified' >&2; exit 1; fi\n"
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        script.push_str(&format!(
            "if [ \"$n\" = {} ]; then echo '{id}'; fi\n",
            i + 1
        ));
    }
    executable(&bin_dir.join("sbatch"), &script);
    bin_dir
}

#[test]
fn submit_sends_the_array_then_the_merge_depending_on_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let path = fake_sbatch(dir.path(), &["41;cluster", "42"], None);
    let assert = bin()
        .env("PATH", &path)
        .args([
            "slurm", "--shards", "3", "--submit", "--json", "--", "--suite", "demo",
        ])
        .arg("--out")
        .arg(&out)
        .assert()
        .success();
    let json: serde_json::Value = serde_json::from_slice(&assert.get_output().stdout).unwrap();
    assert_eq!(json["submitted"]["array_job"], "41");
    assert_eq!(json["submitted"]["merge_job"], "42");
    let slurm = out.join("slurm");
    assert_eq!(
        lines(&dir.path().join("sbatch-calls")),
        vec![
            format!("--parsable {}", slurm.join("shards.sbatch").display()),
            format!(
                "--parsable --dependency=afterok:41 {}",
                slurm.join("merge.sbatch").display()
            ),
        ]
    );
}

#[test]
fn a_failed_merge_submission_names_the_array_job_and_how_to_finish() {
    let dir = tempfile::tempdir().unwrap();
    let path = fake_sbatch(dir.path(), &["41"], Some(2));
    bin()
        .env("PATH", &path)
        .args([
            "slurm", "--shards", "3", "--submit", "--", "--suite", "demo", "--out",
        ])
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("Invalid partition name")
                .and(predicate::str::contains("array job 41 was submitted"))
                .and(predicate::str::contains("scancel 41")),
        );
}

#[test]
fn submit_without_sbatch_is_exit_2_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-path");
    std::fs::create_dir(&empty).unwrap();
    bin()
        .env("PATH", &empty)
        .args([
            "slurm", "--shards", "3", "--submit", "--", "--suite", "demo", "--out",
        ])
        .arg(dir.path().join("out"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("`sbatch` is not on PATH")
                .and(predicate::str::contains("leave out --submit")),
        );
}

#[test]
fn run_arguments_are_checked_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    for (args, message) in [
        (
            vec!["--suite", "demo", "--shard", "1/3"],
            "`--shard` in the run arguments",
        ),
        (
            vec!["--suite", "demo", "--shard-count=3"],
            "`--shard-count=3`",
        ),
        (
            vec!["--suite", "demo", "--bogus"],
            "unexpected argument '--bogus'",
        ),
        (vec!["--out", "x"], "--suite"),
    ] {
        for front in [
            &["slurm"][..],
            &["kubernetes", "--image", "i", "--volume-claim", "v"],
        ] {
            bin()
                .current_dir(dir.path())
                .args(front)
                .args(["--shards", "3", "--"])
                .args(&args)
                .assert()
                .code(2)
                .stderr(predicate::str::contains(message));
        }
    }
    bin()
        .args([
            "slurm",
            "--shards",
            "2",
            "--job-name",
            "two\nlines",
            "--",
            "--suite",
            "demo",
            "--out",
        ])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--job-name \"two\\nlines\": it holds the control character '\\n'",
        ));
    assert!(!out.exists() && std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

/// The manifest as PyYAML reads it, as JSON.
fn yaml_as_json(path: &Path) -> serde_json::Value {
    let output = Command::new(python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "PyYAML could not read {} (scripts/setup.sh --test installs it): {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn kubernetes_manifests_are_an_indexed_job_and_a_merge_on_one_volume() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("k8s");
    bin()
        .args([
            "kubernetes",
            "--shards",
            "5",
            "--image",
            "registry.example/robust-eval:1",
        ])
        .args(["--volume-claim", "evals", "--mount", "/data", "--gpus", "1"])
        .args(["--cpus", "8", "--memory", "16Gi", "--name", "nightly"])
        .arg("--dir")
        .arg(&manifests)
        .args([
            "--",
            "--suite",
            "imagenet-shifts",
            "--out",
            "results/x",
            "--baseline",
            AWKWARD,
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "bash {}",
            manifests.join("run.sh").display()
        )))
        .stdout(predicate::str::contains("Kubernetes 1.29 or later"));

    let job = yaml_as_json(&manifests.join("shards.yaml"));
    assert_eq!(job["apiVersion"], "batch/v1");
    assert_eq!(job["kind"], "Job");
    assert_eq!(job["metadata"]["name"], "nightly");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    assert_eq!(spec["completions"], 5);
    assert_eq!(spec["parallelism"], 5);
    assert_eq!(
        spec["maxFailedIndexes"], 0,
        "the first failed index fails the Job"
    );
    let rules = spec["podFailurePolicy"]["rules"].as_array().unwrap();
    assert_eq!(rules[0]["action"], "FailIndex");
    assert_eq!(rules[0]["onExitCodes"]["values"], serde_json::json!([2]));
    assert_eq!(
        rules[1]["onPodConditions"][0],
        serde_json::json!({ "type": "DisruptionTarget", "status": "True" })
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never");
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        "evals"
    );
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example/robust-eval:1");
    assert_eq!(c["workingDir"], "/data");
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/data");
    assert_eq!(c["volumeMounts"][0]["name"], pod["volumes"][0]["name"]);
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], 1);
    assert_eq!(c["resources"]["requests"]["cpu"], "8");
    assert_eq!(c["env"][0]["name"], "ROBUST_EVAL_SHARD_COUNT");
    assert_eq!(c["env"][0]["value"], "5");
    let command: Vec<&str> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(
        command,
        [
            "robust-eval",
            "run",
            "--suite",
            "imagenet-shifts",
            "--out",
            "results/x",
            "--baseline",
            AWKWARD,
            "--shard",
            "auto",
            "--shard-count",
            "5"
        ]
    );

    let merge = yaml_as_json(&manifests.join("merge.yaml"));
    assert_eq!(merge["metadata"]["name"], "nightly-merge");
    assert_eq!(merge["spec"]["completions"], 1);
    let mc = &merge["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        mc["command"],
        serde_json::json!(["robust-eval", "merge", "results/x", "--baseline", AWKWARD])
    );
    assert_eq!(mc["workingDir"], "/data");
    assert!(mc["resources"]["limits"].get("nvidia.com/gpu").is_none());

    // GPUs and the provider `auto`: an engine Job with a shard's resources comes first.
    let engines = yaml_as_json(&manifests.join("engines.yaml"));
    assert_eq!(engines["metadata"]["name"], "nightly-engines");
    assert_eq!(engines["spec"]["completions"], 1);
    let ec = &engines["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(ec["resources"], c["resources"]);
    assert_eq!(ec["volumeMounts"], c["volumeMounts"]);
    let mut engines_command = serde_json::json!(command[..8]);
    engines_command
        .as_array_mut()
        .unwrap()
        .push("--engines-only".into());
    assert_eq!(ec["command"], engines_command);
}

/// Every Kubernetes the manifests claim (1.29 on) whose API schema `kubernetes-validate` bundles.
const KUBERNETES_VERSIONS: [&str; 9] = [
    "1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0",
];

#[test]
fn kubernetes_manifests_pass_the_api_schema_of_every_supported_version() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("k8s");
    bin()
        .args(["kubernetes", "--shards", "3", "--image", "r/robust-eval:1"])
        .args(["--volume-claim", "evals", "--mount", "/data", "--gpus", "1"])
        .args(["--cpus", "500m", "--memory", "8Gi", "--dir"])
        .arg(&manifests)
        .args([
            "--",
            "--suite",
            "demo",
            "--out",
            "results/x",
            "--baseline",
            AWKWARD,
        ])
        .assert()
        .success();
    for version in KUBERNETES_VERSIONS {
        let output = Command::new(python())
            .args(["-m", "kubernetes_validate", "--strict", "-k", version])
            .arg(manifests.join("engines.yaml"))
            .arg(manifests.join("shards.yaml"))
            .arg(manifests.join("merge.yaml"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "Kubernetes {version}'s schema refuses the manifests (scripts/setup.sh --test installs \
             kubernetes-validate):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A stand-in kubectl: `get` prints the Job condition named in $STATE_<job> (dashes as
/// underscores), every call is logged to $KUBECTL_LOG.
fn fake_kubectl(dir: &Path) -> std::path::PathBuf {
    let bin_dir = dir.join("fake-bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    executable(
        &bin_dir.join("kubectl"),
        "#!/bin/bash\necho \"$*\" >> \"$KUBECTL_LOG\"\nif [ \"$1\" = get ]; then\n  \
         job=${2#job/}; var=STATE_${job//-/_}; echo \"${!var:-}\"\nfi\n",
    );
    bin_dir
}

/// A Kubernetes study "nightly" of 2 shards (`extra` flags added) and its run.sh, run against
/// the stand-in kubectl: `run(states)` runs the script with each Job's condition as given
/// (`("nightly", "Complete")`, ...) and returns its output and the kubectl calls it made.
struct KubernetesStudy {
    dir: tempfile::TempDir,
    manifests: std::path::PathBuf,
}

impl KubernetesStudy {
    fn new(extra: &[&str]) -> KubernetesStudy {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("k8s");
        bin()
            .args([
                "kubernetes",
                "--shards",
                "2",
                "--image",
                "i",
                "--volume-claim",
                "v",
            ])
            .args(extra)
            .args(["--name", "nightly", "--dir"])
            .arg(&manifests)
            .args(["--", "--suite", "demo", "--out", "r"])
            .assert()
            .success();
        bash_n(&manifests.join("run.sh"));
        KubernetesStudy { dir, manifests }
    }

    fn run(&self, states: &[(&str, &str)]) -> (std::process::Output, String) {
        let bin_dir = fake_kubectl(self.dir.path());
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = self.dir.path().join("kubectl.log");
        let _ = std::fs::remove_file(&log);
        let mut script = Command::new("bash");
        script
            .arg(self.manifests.join("run.sh"))
            .env("PATH", &path)
            .env("KUBECTL_LOG", &log)
            .env("POLL_SECONDS", "0");
        for (job, state) in states {
            script.env(format!("STATE_{}", job.replace('-', "_")), state);
        }
        let output = script.output().unwrap();
        (output, std::fs::read_to_string(&log).unwrap_or_default())
    }
}

#[test]
fn kubernetes_run_script_reports_a_failed_index_at_once_and_merges_after_success() {
    let study = KubernetesStudy::new(&[]);
    let run = |shards_state| study.run(&[("nightly", shards_state), ("nightly-merge", "Complete")]);
    // Both conditions are watched: a failed index ends the wait at the first look.
    let (failed, calls) = run("FailureTarget Failed");
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("job/nightly failed") && stderr.contains("kubectl delete job/nightly"),
        "{stderr}"
    );
    assert_eq!(calls.matches("get job/nightly").count(), 1, "{calls}");
    assert!(
        !calls.contains("merge.yaml"),
        "no merge after a failure: {calls}"
    );
    // Success: the shards, then the merge, each waited for.
    let (ok, calls) = run("SuccessCriteriaMet Complete");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let order: Vec<&str> = calls.lines().collect();
    assert!(
        order[0].starts_with("apply -f ") && order[0].ends_with("shards.yaml"),
        "{calls}"
    );
    assert!(order[1].starts_with("get job/nightly "), "{calls}");
    assert!(order[2].ends_with("merge.yaml"), "{calls}");
    assert!(order[3].starts_with("get job/nightly-merge "), "{calls}");
    assert!(
        !study.manifests.join("engines.yaml").exists(),
        "no GPUs: no engine Job"
    );
}

#[test]
fn kubernetes_run_script_starts_the_shards_only_after_the_engine_job_completed() {
    let study = KubernetesStudy::new(&["--gpus", "1"]);
    let run = |engines_state| {
        study.run(&[
            ("nightly-engines", engines_state),
            ("nightly", "Complete"),
            ("nightly-merge", "Complete"),
        ])
    };
    // A failed engine Job stops the study before any shard starts.
    let (failed, calls) = run("Failed");
    assert_eq!(failed.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("job/nightly-engines failed"), "{stderr}");
    assert!(
        !calls.contains("shards.yaml"),
        "no shards after a failed engine Job: {calls}"
    );
    let (ok, calls) = run("Complete");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let order: Vec<&str> = calls.lines().collect();
    assert!(order[0].ends_with("engines.yaml"), "{calls}");
    assert!(order[1].starts_with("get job/nightly-engines "), "{calls}");
    assert!(order[2].ends_with("shards.yaml"), "{calls}");
    assert!(order[3].starts_with("get job/nightly "), "{calls}");
    assert!(order[4].ends_with("merge.yaml"), "{calls}");
}

#[test]
fn kubernetes_refuses_results_or_engines_outside_the_volume() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("k8s");
    for (run_args, message) in [
        (vec!["--out", "/tmp/results"], "--out /tmp/results"),
        (vec!["--out", "../results"], "--out ../results"),
        (
            vec!["--out", "r", "--trt-cache", "/cache"],
            "--trt-cache /cache",
        ),
    ] {
        bin()
            .args([
                "kubernetes",
                "--shards",
                "2",
                "--image",
                "i",
                "--volume-claim",
                "v",
            ])
            .args(["--mount", "/data", "--dir"])
            .arg(&manifests)
            .args(["--", "--suite", "demo"])
            .args(&run_args)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(message))
            .stderr(predicate::str::contains(
                "outside the volume mounted at /data",
            ));
        assert!(!manifests.exists(), "nothing written for {run_args:?}");
    }
    bin()
        .args([
            "kubernetes",
            "--shards",
            "2",
            "--image",
            "i",
            "--volume-claim",
            "v",
        ])
        .args(["--mount", "/data", "--dir"])
        .arg(&manifests)
        .args([
            "--",
            "--suite",
            "demo",
            "--out",
            "/data/r",
            "--trt-cache",
            "cache",
        ])
        .assert()
        .success();
}

#[test]
fn kubernetes_refuses_a_name_pods_cannot_carry() {
    let dir = tempfile::tempdir().unwrap();
    bin()
        .args([
            "kubernetes",
            "--shards",
            "2",
            "--image",
            "i",
            "--volume-claim",
            "v",
        ])
        .args(["--name", "Nightly_Eval", "--dir"])
        .arg(dir.path())
        .args(["--", "--suite", "demo", "--out", "r"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--name \"Nightly_Eval\""));
}
