//! Kubernetes: an Indexed Job (completion index I runs `run --shard auto`, which reads
//! JOB_COMPLETION_INDEX, with the count in --shard-count and ROBUST_EVAL_SHARD_COUNT) and a merge
//! Job, both mounting one PersistentVolumeClaim that holds the results.
//!
//! The manifests are built as JSON values and written as block YAML whose every string is a JSON
//! string (valid YAML, so no name or argument can change the document's structure).
//!
//! They need Kubernetes 1.29 or later ([`MIN_KUBERNETES`]): `backoffLimitPerIndex`,
//! `maxFailedIndexes` and the `FailIndex` action are beta and on by default from 1.29 (GA in 1.33),
//! `podFailurePolicy` from 1.26. With `maxFailedIndexes: 0` the first index that fails for good
//! (its retries spent, or exit status 2: bad input no retry mends) fails the whole Job at once,
//! and `run.sh` (written beside the manifests) waits for `Complete` and `Failed` together, so a
//! failure is reported within a poll instead of never.
//!
//! Where the shards may run on TensorRT, an engine Job (`run --engines-only`, one pod with a
//! shard's resources) comes first: Kubernetes has no dependencies between Jobs, so `run.sh`
//! applies it, waits for it to complete, and only then applies the Indexed Job; a failed engine
//! Job stops there. An init container would run in every shard's pod, building once per pod.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::{shell_quote, ShardedRun};
use crate::error::{Error, Result};
use crate::files::write_atomic;

/// What the pods get: the image, the claim and the resources of each shard's pod.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    pub name: String,
    pub image: String,
    pub volume_claim: String,
    pub mount: String,
    pub gpus: Option<u32>,
    pub cpus: Option<String>,
    pub memory: Option<String>,
    /// Failed attempts allowed per index before the Job gives that index up.
    pub retries: u32,
}

/// The oldest Kubernetes the manifests are written for (and validated against in the tests).
pub const MIN_KUBERNETES: &str = "1.29";

/// Seconds between two looks at a Job's conditions in `run.sh`.
const POLL_SECONDS: u32 = 10;

/// The manifests, and the script that applies them in turn.
#[derive(Debug, Clone, Serialize)]
pub struct Manifests {
    /// The engine Job, where the study has one.
    pub engines: Option<PathBuf>,
    pub shards: PathBuf,
    pub merge: PathBuf,
    pub script: PathBuf,
}

/// Writes `shards.yaml`, `merge.yaml` and `run.sh` into `dir`.
pub fn write(run: &ShardedRun, options: &KubernetesOptions, dir: &Path) -> Result<Manifests> {
    check_name(&options.name)?;
    let manifests = Manifests {
        engines: run.engine_job.then(|| dir.join("engines.yaml")),
        shards: dir.join("shards.yaml"),
        merge: dir.join("merge.yaml"),
        script: dir.join("run.sh"),
    };
    if let Some(engines) = &manifests.engines {
        write_atomic(engines, yaml(&engines_job(run, options)).as_bytes())?;
    }
    write_atomic(
        &manifests.shards,
        yaml(&shards_job(run, options)).as_bytes(),
    )?;
    write_atomic(&manifests.merge, yaml(&merge_job(run, options)).as_bytes())?;
    write_atomic(&manifests.script, script(&manifests, options).as_bytes())?;
    Ok(manifests)
}

/// Every pod writes under the claim's mount: a results folder or TensorRT cache elsewhere would
/// go to the pod's own filesystem and be lost with it. `path` is as the pods see it (relative to
/// their working folder, the mount); `option` names it in the refusal.
pub fn check_on_volume(option: &str, path: &Path, mount: &str) -> Result<()> {
    let mount_path = Path::new(mount);
    if !mount_path.is_absolute() {
        return Err(Error::Usage(format!(
            "--mount {mount:?}: the claim's mount must be an absolute path in the pods"
        )));
    }
    // Lexically, as the pod would resolve it: `..` steps out, `.` stays.
    let mut resolved = PathBuf::new();
    for part in mount_path.join(path).components() {
        match part {
            Component::ParentDir => {
                resolved.pop();
            }
            Component::CurDir => {}
            other => resolved.push(other),
        }
    }
    if resolved.starts_with(mount_path) {
        return Ok(());
    }
    Err(Error::Usage(format!(
        "{option} {}: the pods would write it to {}, outside the volume mounted at {mount}, and \
         lose it with the pod; give a path under {mount} (or relative to it)",
        path.display(),
        resolved.display()
    )))
}

/// Job names become pod names and labels: DNS labels (RFC 1123) short enough for Kubernetes to
/// append the index and a suffix.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "--name {name:?}: a Job name must be lower-case letters, digits and `-`, start and end \
             with a letter or digit, and be at most 40 characters"
        )))
    }
}

/// The Indexed Job: N completions, all N at once, each index retried on its own.
pub fn shards_job(run: &ShardedRun, options: &KubernetesOptions) -> Value {
    let command = run.shard_command();
    let mut container = container("shard", options, command, true);
    container["env"] = json!([
        { "name": "ROBUST_EVAL_SHARD_COUNT", "value": run.shards.to_string() }
    ]);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": options.name, "labels": labels(options, "shards") },
        "spec": {
            "completionMode": "Indexed",
            "completions": run.shards,
            "parallelism": run.shards,
            "backoffLimitPerIndex": options.retries,
            // The first index that fails for good fails the Job: reported at once, not after
            // every other index has run to its end.
            "maxFailedIndexes": 0,
            "podFailurePolicy": { "rules": [
                // Exit status 2 is bad input (a missing file, a refused option): no retry mends it.
                { "action": "FailIndex", "onExitCodes": {
                    "containerName": "shard", "operator": "In", "values": [2]
                } },
                // A pod evicted or preempted is no failure of the shard: it is started again, and
                // resumes from the pairs its folder holds.
                { "action": "Ignore", "onPodConditions": [
                    { "type": "DisruptionTarget", "status": "True" }
                ] }
            ] },
            "template": pod(options, "shards", container),
        }
    })
}

/// The engine Job: one pod with a shard's resources running `run ... --engines-only`, which
/// builds every model's TensorRT engine into the study's cache on the volume.
pub fn engines_job(run: &ShardedRun, options: &KubernetesOptions) -> Value {
    let container = container("engines", options, run.engines_command(), true);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": format!("{}-engines", options.name), "labels": labels(options, "engines") },
        "spec": {
            "completions": 1,
            "backoffLimit": options.retries,
            "podFailurePolicy": { "rules": [
                // Bad input: no retry mends it.
                { "action": "FailJob", "onExitCodes": {
                    "containerName": "engines", "operator": "In", "values": [2]
                } },
                { "action": "Ignore", "onPodConditions": [
                    { "type": "DisruptionTarget", "status": "True" }
                ] }
            ] },
            "template": pod(options, "engines", container),
        }
    })
}

/// The merge Job: one pod running `merge <out>` on the same volume.
pub fn merge_job(run: &ShardedRun, options: &KubernetesOptions) -> Value {
    let container = container("merge", options, run.merge_command(), false);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": { "name": format!("{}-merge", options.name), "labels": labels(options, "merge") },
        "spec": {
            "completions": 1,
            "backoffLimit": options.retries,
            "template": pod(options, "merge", container),
        }
    })
}

fn labels(options: &KubernetesOptions, component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "robust-eval",
        "app.kubernetes.io/instance": options.name,
        "app.kubernetes.io/component": component,
    })
}

fn pod(options: &KubernetesOptions, component: &str, container: Value) -> Value {
    json!({
        "metadata": { "labels": labels(options, component) },
        "spec": {
            // Never, not OnFailure: per-index retries and the pod failure policy need it.
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": [{
                "name": "results",
                "persistentVolumeClaim": { "claimName": options.volume_claim }
            }]
        }
    })
}

/// The container: the image, the command, relative paths resolved on the volume.
fn container(name: &str, options: &KubernetesOptions, command: Vec<String>, shard: bool) -> Value {
    let mut c = json!({
        "name": name,
        "image": options.image,
        "command": command,
        "workingDir": options.mount,
        "volumeMounts": [{ "name": "results", "mountPath": options.mount }],
    });
    let mut requests = Map::new();
    let mut limits = Map::new();
    if let Some(cpus) = &options.cpus {
        requests.insert("cpu".into(), json!(cpus));
    }
    if let Some(memory) = &options.memory {
        requests.insert("memory".into(), json!(memory));
        limits.insert("memory".into(), json!(memory));
    }
    if let (Some(g), true) = (options.gpus, shard) {
        limits.insert("nvidia.com/gpu".into(), json!(g));
    }
    if !requests.is_empty() || !limits.is_empty() {
        c["resources"] = json!({ "requests": requests, "limits": limits });
    }
    c
}

/// The command that starts the shards, waits for them, then merges: `run.sh`.
pub fn commands(manifests: &Manifests) -> Vec<String> {
    vec![format!(
        "bash {}",
        shell_quote(&manifests.script.display().to_string())
    )]
}

/// `run.sh`: apply the Indexed Job, wait until it is `Complete` or `Failed` (polling both, so a
/// failed index is reported within a poll), then the same for the merge Job. A Job that reaches
/// neither within `WAIT_HOURS` (default 72) is reported too: no wait without end.
fn script(manifests: &Manifests, options: &KubernetesOptions) -> String {
    let quote = |p: &Path| shell_quote(&p.display().to_string());
    format!(
        r#"#!/bin/bash
# Written by `robust-eval kubernetes` (Kubernetes {MIN_KUBERNETES} or later): {engines_note}starts the
# shards' Indexed Job, waits for it to complete or fail, then starts the merge Job and waits for it.
# After a failure: read the failed pod's log, fix the cause, `kubectl delete job/{name}` (and
# job/{name}-merge if it was started), and run this again: the pairs the shards finished are
# kept on the volume and not evaluated again.
set -euo pipefail
poll=${{POLL_SECONDS:-{POLL_SECONDS}}}
deadline=$(( $(date +%s) + ${{WAIT_HOURS:-72}} * 3600 ))
wait_for() {{
  local job=$1 state
  while :; do
    state=$(kubectl get "job/$job" -o 'jsonpath={{.status.conditions[?(@.status=="True")].type}}')
    case " $state " in
      *" Complete "*) echo "job/$job complete"; return 0 ;;
      *" Failed "* | *" FailureTarget "*)
        echo "job/$job failed: kubectl describe job/$job; kubectl logs job/$job" >&2
        echo "to run again: fix the cause, kubectl delete job/$job, and run $0 again (finished pairs are kept)" >&2
        return 1 ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "job/$job neither complete nor failed after ${{WAIT_HOURS:-72}} hours (WAIT_HOURS)" >&2
      return 1
    fi
    sleep "$poll"
  done
}}
{engines_steps}kubectl apply -f {shards}
wait_for {name}
kubectl apply -f {merge}
wait_for {name}-merge
"#,
        name = options.name,
        engines_note = match manifests.engines {
            Some(_) => "starts the engine Job\n# (every model's TensorRT engine built once) and waits for it to complete, then ",
            None => "",
        },
        engines_steps = match &manifests.engines {
            Some(engines) => format!(
                "kubectl apply -f {}\nwait_for {}-engines\n",
                quote(engines),
                options.name
            ),
            None => String::new(),
        },
        shards = quote(&manifests.shards),
        merge = quote(&manifests.merge),
    )
}

/// Block YAML for a JSON value: keys and strings as JSON strings, which YAML reads as its
/// double-quoted scalars.
pub fn yaml(value: &Value) -> String {
    let mut out = String::new();
    block(value, 0, &mut out);
    out
}

fn block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                out.push_str(&format!("{pad}{}:", scalar(&Value::String(key.clone()))));
                nested(v, indent + 2, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                // The item's block, its first line's indent replaced by the dash.
                let mut inner = String::new();
                block(item, indent + 2, &mut inner);
                out.push_str(&pad);
                out.push_str("- ");
                out.push_str(&inner[indent + 2..]);
            }
        }
        other => {
            out.push_str(&pad);
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

/// After `key:`: a scalar on the same line, a collection below.
fn nested(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(value, indent, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(value, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other));
            out.push('\n');
        }
    }
}

fn scalar(value: &Value) -> String {
    match value {
        // Plain keys such as `apiVersion` read better bare, and YAML reads them the same.
        Value::String(s)
            if !s.is_empty()
                && s.chars().all(|c| c.is_ascii_alphanumeric())
                && s.starts_with(|c: char| c.is_ascii_alphabetic())
                && !["true", "false", "null", "yes", "no", "on", "off", "y", "n"]
                    .contains(&s.to_ascii_lowercase().as_str()) =>
        {
            s.clone()
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_nests_maps_and_lists() {
        let v = json!({ "a": { "b": [1, { "c": "x y", "d": [] }] }, "e": {} });
        assert_eq!(
            yaml(&v),
            "a:\n  b:\n    - 1\n    - c: \"x y\"\n      d: []\ne: {}\n"
        );
    }
}
