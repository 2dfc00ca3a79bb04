#!/usr/bin/env bash
# The Slurm tier: a real single-node Slurm (Debian's slurm-wlm and munge, installed with apt-get
# when missing) started by this script in a temporary folder, with its own config, ports and munge
# socket (nothing under /etc is changed). The node has one GPU as Slurm sees it (GresTypes=gpu,
# Gres=gpu:1, gres.conf `Name=gpu File=/dev/null`), so Slurm validates and allocates GPU requests
# as a GPU cluster does. From a folder whose name holds what sbatch's parser treats specially
# (`'`, `#`, `%`, blanks), the demo suite is submitted as a 3-task array with --gpus-per-task 1
# through `robust-eval slurm --submit`: the engine job (`run --engines-only`; with no TensorRT
# here it builds nothing and succeeds), the array depending on it and the merge depending on the
# array. Slurm's record of the jobs must hold the folder and the job name unchanged, and no array
# task may start before the engine job ended. Once the jobs have left the queue, one
# task is run again by Slurm (`scontrol requeue`, as after preemption) and must resume its shard
# without evaluating anything. A second study whose engine job fails (--provider tensorrt, which
# this ONNX Runtime lacks) must hold its array and merge pending (DependencyNeverSatisfied), no
# shard started. Then the merged folder must equal a single run's: evals.csv
# (without the timing columns seconds and images_per_s), every predictions file byte for byte,
# and fit.json. About 3 minutes on 2 cores once Slurm is installed (the demo runs twice: as shards, then whole).
# When it cannot run (not root, no apt-get, the daemons do not start), it prints
# "slurm tier SKIPPED: <why>" and exits 0. A failure prints the jobs' logs and exits 1.
# Uses ROBUST_EVAL_BIN as the binary under test when set.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

skip() {
  echo "slurm tier SKIPPED: $1"
  exit 0
}

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || skip "no Slurm and no apt-get to install it"
  [ "$(id -u)" = 0 ] || skip "no Slurm, and installing it needs root"
  echo "test_slurm: installing Debian's slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || skip "apt-get update failed"
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 slurm-wlm munge >/dev/null \
    || skip "apt-get install slurm-wlm munge failed"
fi
# slurmd runs jobs as their submitter; as anyone but root it could not run them for us.
[ "$(id -u)" = 0 ] || skip "slurmd must run as root to start jobs"

bin=${ROBUST_EVAL_BIN:-}
if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=$root/target/release/robust-eval
fi

tmp=$(mktemp -d /tmp/robust-eval-slurm.XXXXXX)
chmod 755 "$tmp"
# The folder the study is submitted from, and its results folder.
study="$tmp/it's study #1 50%"
out="$study/sharded out"
mkdir -p "$study"
state=$tmp/slurm
mkdir -p "$state/ctld" "$state/spool" "$state/munge"
chmod 711 "$state/munge"
pids=()
stop() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap stop EXIT

# munge: a key of our own, a socket of our own.
dd if=/dev/urandom bs=1 count=1024 of="$state/munge/munge.key" status=none
chmod 400 "$state/munge/munge.key"
socket=$state/munge/munge.socket
munged --foreground --force --key-file="$state/munge/munge.key" --socket="$socket" \
  --pid-file="$state/munge/munged.pid" --log-file="$state/munge/munged.log" \
  --seed-file="$state/munge/munged.seed" >"$state/munge/stdout.log" 2>&1 &
pids+=($!)

host=$(hostname -s)
cpus=$(nproc)
memory=$(free -m | awk '/^Mem:/ { m = $2 - 512; print (m > 256 ? m : 256) }')
export SLURM_CONF=$state/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=robusteval
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$socket
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SlurmctldLogFile=$state/slurmctld.log
SlurmdLogFile=$state/slurmd.log
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# One GPU Slurm can count and allocate, with no device behind it: the jobs run on the CPU.
echo "NodeName=$host Name=gpu File=/dev/null" >"$state/gres.conf"

logs() {
  local f
  for f in "$state"/*.log "$state"/munge/*.log "$out"/slurm/*.out; do
    [ -f "$f" ] || continue
    echo "----- $f"
    tail -n 60 "$f"
  done
}
fail() {
  echo "slurm tier FAILED: $1" >&2
  logs >&2
  exit 1
}

for _ in $(seq 50); do [ -S "$socket" ] && break; sleep 0.2; done
[ -S "$socket" ] || { logs; skip "munged did not start (its log is above)"; }
slurmctld -D -c -f "$SLURM_CONF" >"$state/slurmctld.stdout" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" >"$state/slurmd.stdout" 2>&1 &
pids+=($!)
node=""
for _ in $(seq 60); do
  node=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
  [ "$node" = idle ] && break
  sleep 1
done
[ "$node" = idle ] || { logs; skip "the Slurm daemons did not bring node $host up (state '${node:-none}'; logs above)"; }
echo "test_slurm: Slurm $(sinfo -V | awk '{ print $2 }') is up: node $host, $cpus CPUs"

# The same run arguments for the shards and for the single run; the demo is extracted into this
# test's own cache, by three tasks at once.
export ROBUST_EVAL_CACHE=$tmp/cache
run_args=(--suite demo --threads 1 --loader-threads 1 --progress none)
job_name="robust-eval test #1 it's"
(cd "$study" && exec "$bin" slurm --shards 3 --cpus-per-task 1 --gpus-per-task 1 --job-name "$job_name" \
  --submit --json -- "${run_args[@]}" --out "sharded out") >"$tmp/submitted.json" \
  || fail "robust-eval slurm --submit failed"
jobs=$(python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["submitted"]; print(s["engines_job"], s["array_job"], s["merge_job"])' "$tmp/submitted.json")
read -r engines array merge <<<"$jobs"
[ "$engines" != None ] || fail "no engine job was submitted for a GPU array with --provider auto"
echo "test_slurm: submitted engine job $engines, array job $array after it and merge job $merge from '$study'"
# Slurm read every #SBATCH value as written: the folder, the job name, one GPU per task.
record=$(scontrol show job "$array")
echo "$record" >"$tmp/array-record.txt"
grep -qxF "   WorkDir=$study" <<<"$record" || fail "Slurm's WorkDir is not '$study': $record"
grep -qF "JobName=$job_name"$'\n' <<<"$record"$'\n' || fail "Slurm's JobName is not '$job_name': $record"
grep -qE "TresPerTask=(gres:|gres/)?gpu:1" <<<"$record" || fail "the array tasks asked for no GPU per task: $record"
# The log path's own `%` is written `%%` (Slurm expands `%a`); scontrol shows it unexpanded, so the
# logs are checked where they land: shard-1.out in "$out/slurm" below.

for _ in $(seq 600); do
  [ -z "$(squeue -h -j "$engines,$array,$merge" -o %i 2>/dev/null)" ] && break
  sleep 1
done
[ -z "$(squeue -h -j "$engines,$array,$merge" -o %i)" ] || fail "the jobs were still queued after 10 minutes"
# The engine job ran first and succeeded; every array task started at or after its end (Slurm's
# times are ISO 8601 to the second, so they compare as text).
scontrol -o show job "$engines" | grep -q 'JobState=COMPLETED' || fail "the engine job did not complete"
engines_end=$(scontrol -o show job "$engines" | grep -o 'EndTime=[^ ]*' | cut -d= -f2)
grep -q 'no TensorRT engines built' "$out"/slurm/engines-"$engines".out \
  || fail "the engine job's log does not say what it built"
while read -r start; do
  [[ ! "$start" < "$engines_end" ]] || fail "an array task started at $start, before the engine job ended at $engines_end"
done < <(scontrol -o show job "$array" | grep -o ' StartTime=[^ ]*' | cut -d= -f2)
echo "test_slurm: engine job $engines ended at $engines_end; every array task started after it"
states=$(scontrol -o show job "$array" | grep -o 'JobState=[A-Z_]*' | sort | uniq -c)
echo "test_slurm: array tasks: $(echo $states)"
[ "$(scontrol -o show job "$array" | grep -c 'JobState=COMPLETED')" = 3 ] || fail "not every array task completed"
scontrol -o show job "$merge" | grep -q 'JobState=COMPLETED' || fail "the merge job did not complete"
shards=$(cd "$out/shards" && echo *)
[ "$shards" = "0-of-3 1-of-3 2-of-3" ] || fail "expected shard folders 0-of-3 1-of-3 2-of-3, found: $shards"

# A task the scheduler runs again (as after preemption: `scontrol requeue`) resumes its shard:
# every pair up to date, nothing evaluated, the shard's files unchanged.
shard1=$out/shards/1-of-3
cp -r "$shard1" "$tmp/shard1-before"
scontrol requeue "${array}_1" || fail "scontrol requeue ${array}_1 failed"
for _ in $(seq 300); do
  [ -z "$(squeue -h -j "$array" -o %i 2>/dev/null)" ] && break
  sleep 1
done
scontrol -o show job "${array}_1" | grep -q 'JobState=COMPLETED' || fail "the requeued task did not complete"
log1=$out/slurm/shard-1.out
grep -q 'attempt 2' "$log1" || fail "shard 1's log has no second attempt"
resumed=$(grep 'pairs evaluated' "$log1" | tail -n 1)
[[ "$resumed" =~ ^0\ pairs\ evaluated,\ [1-9][0-9]*\ up\ to\ date ]] \
  || fail "the requeued shard evaluated pairs again: '$resumed'"
diff -r "$tmp/shard1-before/predictions" "$shard1/predictions" || fail "the requeued shard changed its predictions"
cmp "$tmp/shard1-before/evals.csv" "$shard1/evals.csv" || fail "the requeued shard changed its evals.csv"
echo "test_slurm: requeued task ${array}_1 resumed its shard: ${resumed%%;*}"

# A failed engine job holds the study: the array and the merge stay pending, no shard starts.
(cd "$study" && exec "$bin" slurm --shards 2 --cpus-per-task 1 --gpus-per-task 1 --engine-job yes \
  --submit --json -- "${run_args[@]}" --provider tensorrt --out "held out") >"$tmp/held.json" \
  || fail "robust-eval slurm --submit (the held study) failed"
read -r held_engines held_array held_merge < <(python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["submitted"]; print(s["engines_job"], s["array_job"], s["merge_job"])' "$tmp/held.json")
reason=""
for _ in $(seq 120); do
  reason=$(squeue -h -j "$held_array" -o '%T %r' 2>/dev/null | sort -u)
  [ "$reason" = "PENDING DependencyNeverSatisfied" ] && break
  sleep 1
done
scontrol -o show job "$held_engines" | grep -q 'JobState=FAILED' || fail "the held study's engine job did not fail"
[ "$reason" = "PENDING DependencyNeverSatisfied" ] \
  || fail "after a failed engine job the array is '$reason', not held pending (DependencyNeverSatisfied)"
squeue -h -j "$held_merge" -o %T | grep -qx PENDING || fail "the held study's merge job left the queue"
[ ! -e "$study/held out/shards" ] && ! ls "$study/held out/slurm/"shard-*.out >/dev/null 2>&1 \
  || fail "a shard of the held study started after its engine job failed"
echo "test_slurm: engine job $held_engines failed; array $held_array held ($reason), merge $held_merge pending"
scancel "$held_array" "$held_merge"

"$bin" run "${run_args[@]}" --out "$tmp/single" >"$tmp/single.log" 2>&1 || { cat "$tmp/single.log"; fail "the single run failed"; }
python3 - "$tmp/single/evals.csv" "$out/evals.csv" <<'EOF' || fail "evals.csv differs"
import csv, sys
def rows(path):
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    keep = [i for i, name in enumerate(table[0]) if name not in ("seconds", "images_per_s")]
    return [[r[i] for i in keep] for r in table]
single, merged = rows(sys.argv[1]), rows(sys.argv[2])
if single != merged:
    for a, b in zip(single, merged):
        if a != b:
            print("single:", a, "\nmerged:", b, file=sys.stderr)
    sys.exit(f"{len(single)} rows in one run, {len(merged)} merged")
print(f"test_slurm: evals.csv: {len(single) - 1} rows equal (timings aside)")
EOF
diff -r "$tmp/single/predictions" "$out/predictions" || fail "the predictions differ"
echo "test_slurm: predictions: $(find "$tmp/single/predictions" -type f | wc -l) files byte-identical"
cmp "$tmp/single/fit.json" "$out/fit.json" || fail "fit.json differs"
echo "test_slurm: fit.json identical"
echo "slurm tier: passed"
