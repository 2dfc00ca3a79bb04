//! One pass of a preprocessing group over a dataset: images decoded and preprocessed in
//! parallel on a rayon pool, a bounded window of batches ahead of inference, and every model of
//! the group scoring the same batches.

use super::*;

/// What a group's pass over a dataset reads from the run.
pub(super) struct Context<'a> {
    pub(super) plan: &'a DatasetPlan,
    /// The loaded rows (indices into `plan.load`) this pass reads: all, or a shard's part.
    pub(super) rows: Range<usize>,
    pub(super) settings: &'a RunSettings,
    pub(super) pool: &'a rayon::ThreadPool,
    pub(super) progress: &'a dyn Progress,
}

pub(super) struct Member<'a> {
    pub(super) card: &'a ModelCard,
    pub(super) evaluation: Evaluation,
    /// The execution provider its sessions run on.
    pub(super) provider: String,
    /// Precision, provider settings and node placement of its sessions.
    pub(super) execution: crate::engine::runtime::Execution,
}

/// A batch of preprocessed images on its way to inference.
pub(super) struct Batch {
    /// Position in the dataset's order of batches.
    pub(super) seq: usize,
    /// Manifest rows, in order.
    pub(super) rows: Vec<usize>,
    /// `rows.len()` images, NCHW.
    pub(super) pixels: Vec<f32>,
    /// Per image: why it could not be read, if it could not.
    pub(super) errors: Vec<Option<String>>,
}

/// A batch's logits, one vector per member, on its way back to scoring.
pub(super) struct Inferred {
    pub(super) seq: usize,
    pub(super) rows: Vec<usize>,
    pub(super) errors: Vec<Option<String>>,
    pub(super) logits: Vec<Vec<f32>>,
}

/// Counts and per-image records for one view of one model.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) n: u64,
    pub(super) correct: u64,
    pub(super) correct5: u64,
    pub(super) failed: u64,
    pub(super) skipped: u64,
    pub(super) predictions: Predictions,
}

/// Where a worker's next batch comes from: the loader's queue, or decoded by the worker itself.
pub(super) enum Feed {
    Queue(Arc<Mutex<std::sync::mpsc::Receiver<Batch>>>),
    Own(Vec<f32>),
}

/// One group's pass over a dataset: what every stage reads.
pub(super) struct Pass<'a> {
    pub(super) plan: &'a DatasetPlan,
    pub(super) spec: PreprocessSpec,
    pub(super) border: u32,
    pub(super) per_image: usize,
    pub(super) chunks: Vec<&'a [usize]>,
    pub(super) pool: &'a rayon::ThreadPool,
    pub(super) next_chunk: AtomicUsize,
}

impl Pass<'_> {
    /// Decode and preprocess batch `seq` into `pixels` (reused), in parallel on the loader pool
    /// or on the calling thread.
    pub(super) fn read_batch(&self, seq: usize, mut pixels: Vec<f32>, parallel: bool) -> Batch {
        let chunk = self.chunks[seq];
        let per_image = self.per_image;
        pixels.resize(chunk.len() * per_image, 0.0);
        let read = |(out, &row): (&mut [f32], &usize)| {
            let path = self.plan.manifest.resolve(&self.plan.manifest.rows[row]);
            preprocess_file(&path, &self.spec, self.border, out).err()
        };
        let errors = if parallel {
            self.pool.install(|| {
                pixels
                    .par_chunks_mut(per_image)
                    .zip(chunk.par_iter())
                    .map(read)
                    .collect()
            })
        } else {
            pixels
                .chunks_mut(per_image)
                .zip(chunk.iter())
                .map(read)
                .collect()
        };
        Batch {
            seq,
            rows: chunk.to_vec(),
            pixels,
            errors,
        }
    }

    /// The next batch for a worker, and the seconds spent waiting for (or decoding) it.
    pub(super) fn next_batch(&self, feed: &mut Feed) -> (Option<Batch>, f64) {
        // Time inference spends waiting for decoded images says which side bounds the run.
        let waiting = Instant::now();
        let next = match feed {
            Feed::Queue(rx) => rx.lock().ok().and_then(|r| r.recv().ok()),
            Feed::Own(pixels) => {
                let seq = self.next_chunk.fetch_add(1, Ordering::Relaxed);
                (seq < self.chunks.len())
                    .then(|| self.read_batch(seq, std::mem::take(pixels), false))
            }
        };
        (next, waiting.elapsed().as_secs_f64())
    }

    /// A worker: infer batches with its sessions (one per member) until there are none or one
    /// fails. Returns the seconds it waited for batches.
    pub(super) fn work(
        &self,
        mut feed: Feed,
        sessions: &mut [&mut OrtClassifier],
        done: std::sync::mpsc::Sender<Result<Inferred>>,
        free: std::sync::mpsc::Sender<Vec<f32>>,
    ) -> f64 {
        let mut waited = 0.0;
        loop {
            let (next, wait) = self.next_batch(&mut feed);
            waited += wait;
            let Some(batch) = next else { break };
            let n = batch.rows.len();
            let logits: Result<Vec<Vec<f32>>> = sessions
                .iter_mut()
                .map(|s| classify_chunked(&mut **s, &batch.pixels, n, self.per_image))
                .collect();
            match &mut feed {
                Feed::Queue(_) => {
                    let _ = free.send(batch.pixels);
                }
                Feed::Own(pixels) => *pixels = batch.pixels,
            }
            let inferred = logits.map(|logits| Inferred {
                seq: batch.seq,
                rows: batch.rows,
                errors: batch.errors,
                logits,
            });
            let failed = inferred.is_err();
            if done.send(inferred).is_err() || failed {
                break;
            }
        }
        waited
    }
}

/// What a pass produced: per member and view the tallies, the images that failed, and the mean
/// seconds a worker waited for batches.
pub(super) struct Scored {
    pub(super) tallies: Vec<Vec<Tally>>,
    pub(super) failures: Vec<(usize, String)>,
    pub(super) waited: f64,
}

/// Batches the loader feeding a single worker holds at once, decoding or decoded and waiting
/// for inference: `--prefetch` ahead of the one inference is about to take. When inference waits
/// for images, all of them are decoding at once.
pub fn loader_window(prefetch: usize) -> usize {
    prefetch + 1
}

/// Decode, infer and score every batch of the pass. With several workers (the CPU), each decodes
/// a batch on its own thread and then infers it: every core alternates between the two stages
/// and no thread preempts another, where decoders on threads of their own would thrash the
/// caches of inference running beside them. A single worker (a GPU, or --inference-workers 1) is
/// fed by the loader pool, several batches decoding at once (`loader::read_in_order`), so
/// decoding overlaps inference and no core waits for the slowest image of a batch.
pub(super) fn infer_and_score(
    pass: &Pass<'_>,
    members: &[Member<'_>],
    workers: &mut [Vec<&mut OrtClassifier>],
    prefetch: usize,
    task: &mut dyn crate::engine::progress::Task,
) -> Result<Scored> {
    let plan = pass.plan;
    let mut scored = Scored {
        tallies: members
            .iter()
            .map(|_| plan.views.iter().map(|_| Tally::default()).collect())
            .collect(),
        failures: Vec::new(),
        waited: 0.0,
    };
    let worker_count = workers.len().max(1);
    let decode_in_workers = worker_count > 1;
    std::thread::scope(|scope| {
        // Batch buffers are reused once inferred: at most prefetch + workers + 1 are ever
        // allocated (the loader's window and one per worker), whatever the dataset's length,
        // and none is faulted in afresh per batch.
        let (free_tx, free_rx) = std::sync::mpsc::channel::<Vec<f32>>();
        let queue = if decode_in_workers {
            None
        } else {
            // A rendezvous: the batches decoded ahead wait in the loader's window, not here.
            let (tx, rx) = sync_channel::<Batch>(0);
            scope.spawn(move || {
                crate::engine::loader::read_in_order(
                    pass.pool,
                    pass.chunks.len(),
                    loader_window(prefetch),
                    || free_rx.try_recv().unwrap_or_default(),
                    |seq, pixels| pass.read_batch(seq, pixels, true),
                    |batch| tx.send(batch).is_ok(), // false: inference stopped on an error
                );
            });
            // Dropped with the last worker, which stops the loader if scoring gave up early.
            Some(Arc::new(Mutex::new(rx)))
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel::<Result<Inferred>>();
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|sessions| {
                let feed = match &queue {
                    Some(rx) => Feed::Queue(Arc::clone(rx)),
                    None => Feed::Own(Vec::new()),
                };
                let (done, free) = (done_tx.clone(), free_tx.clone());
                scope.spawn(move || pass.work(feed, sessions, done, free))
            })
            .collect();
        drop((done_tx, free_tx, queue));
        // Scored in dataset order, whichever worker finished first.
        let mut ready: BTreeMap<usize, Inferred> = BTreeMap::new();
        let mut next_seq = 0;
        for inferred in done_rx {
            let inferred = inferred?;
            ready.insert(inferred.seq, inferred);
            while let Some(batch) = ready.remove(&next_seq) {
                next_seq += 1;
                score_batch(
                    plan,
                    members,
                    &mut scored.tallies,
                    &mut scored.failures,
                    &batch,
                );
                task.inc(batch.rows.len() as u64);
            }
        }
        let waited: f64 = handles.into_iter().filter_map(|h| h.join().ok()).sum();
        scored.waited = waited / worker_count as f64;
        Ok(scored)
    })
}

pub(super) fn evaluate_group(
    context: &Context<'_>,
    members: &mut [Member<'_>],
    workers: &mut [Vec<&mut OrtClassifier>],
    store: &mut ResultsStore,
) -> Result<Vec<usize>> {
    let plan = context.plan;
    let spec = plan.dataset.resize.apply(members[0].card.preprocess);
    let batch_size = context.settings.batch_size.max(1);
    let started = now();
    let clock = Instant::now();
    // One progress task per group: its models advance together on the same decoded batches.
    let label = match &*members {
        [only] => format!("{} · {}", only.card.name, plan.dataset.name),
        _ => format!("{} models · {}", members.len(), plan.dataset.name),
    };
    let load = &plan.load[context.rows.clone()];
    let mut task = context.progress.start(&label, load.len() as u64);
    let pass = Pass {
        plan,
        spec,
        border: plan.dataset.scoring.border(),
        per_image: spec.tensor_len(),
        chunks: load.chunks(batch_size).collect(),
        pool: context.pool,
        next_chunk: AtomicUsize::new(0),
    };
    let scored = infer_and_score(
        &pass,
        members,
        workers,
        context.settings.prefetch,
        task.as_mut(),
    )?;
    let seconds = clock.elapsed().as_secs_f64();
    let timing = Timing {
        started,
        finished: now(),
        seconds,
        bound: Boundedness::judge(scored.waited, seconds, workers.len() > 1),
    };
    task.finish(&format!("{label}: done in {seconds:.1}s"));
    context
        .progress
        .message(&format!("{label}: {}", timing.bound.describe()));
    for (member, tally) in members.iter_mut().zip(scored.tallies) {
        let summary = record_member(
            plan,
            &context.rows,
            member,
            tally,
            &scored.failures,
            &timing,
            store,
        )?;
        context.progress.message(&summary);
    }
    Ok(scored.failures.iter().map(|(row, _)| *row).collect())
}

/// Add one inferred batch to every member's tallies.
pub(super) fn score_batch(
    plan: &DatasetPlan,
    members: &[Member<'_>],
    tallies: &mut [Vec<Tally>],
    failures: &mut Vec<(usize, String)>,
    batch: &Inferred,
) {
    for (i, error) in batch.errors.iter().enumerate() {
        if let Some(reason) = error {
            failures.push((batch.rows[i], reason.clone()));
        }
    }
    for ((member, tally), logits) in members.iter().zip(tallies.iter_mut()).zip(&batch.logits) {
        let width = member.card.output_width();
        for (i, &row) in batch.rows.iter().enumerate() {
            let class_logits = &logits[i * width + member.card.offset..(i + 1) * width];
            for (view, t) in plan.views.iter().zip(tally.iter_mut()) {
                let Some(target) = view.targets[row] else {
                    continue;
                };
                if batch.errors[i].is_some() {
                    t.failed += 1;
                    continue;
                }
                let scored = view.space.score(class_logits, target);
                t.n += 1;
                t.correct += scored.correct as u64;
                t.correct5 += scored.correct_top5 as u64;
                let p = &mut t.predictions;
                let manifest_row = &plan.manifest.rows[row];
                p.index.push(row as u32);
                p.path.push(manifest_row.path.clone());
                p.label.push(manifest_row.label.clone());
                p.target.push(match target {
                    Target::Class(c) | Target::ObjectNet(c) => c as u32,
                    // Stored as null: see `View::labelled`.
                    Target::Unlabelled => 0,
                });
                p.top5.push(scored.top5);
                p.correct.push(scored.correct);
                p.correct_top5.push(scored.correct_top5);
                p.confidence.push(scored.confidence.max_probability);
                p.entropy.push(scored.confidence.entropy);
            }
        }
    }
}

/// Whether decoding or inference limited a group's pass.
///
/// With one worker fed by the loader pool, `waiting_fraction` is the share of the pass inference
/// spent waiting for decoded batches. When workers decode their own batches (the CPU), it is the
/// share of the workers' time spent decoding rather than inferring.
#[derive(Debug, Clone, Copy)]
pub struct Boundedness {
    pub waiting_fraction: f64,
    pub decode_in_workers: bool,
}

impl Boundedness {
    pub fn judge(waited: f64, seconds: f64, decode_in_workers: bool) -> Boundedness {
        Boundedness {
            waiting_fraction: if seconds > 0.0 {
                (waited / seconds).clamp(0.0, 1.0)
            } else {
                0.0
            },
            decode_in_workers,
        }
    }

    /// Fed by the loader: inference waiting more than a tenth of the time (the first batch
    /// included) means decoding could not keep up. Decoding in the workers: decoding taking
    /// most of their time.
    pub fn decode_bound(&self) -> bool {
        if self.decode_in_workers {
            self.waiting_fraction > 0.5
        } else {
            self.waiting_fraction > 0.10
        }
    }

    pub fn describe(&self) -> String {
        let pct = 100.0 * self.waiting_fraction;
        let bound = if self.decode_bound() {
            "decode-bound"
        } else {
            "inference-bound"
        };
        if self.decode_in_workers {
            format!(
                "{bound}: the workers spent {pct:.0} % of their time decoding images and {:.0} % \
                 inferring",
                100.0 - pct
            )
        } else if self.decode_bound() {
            format!(
                "{bound}: inference waited for decoded images {pct:.0} % of the time \
                 (more --loader-threads, or fewer inference --threads, may help)"
            )
        } else {
            format!("{bound}: inference waited for decoded images {pct:.0} % of the time")
        }
    }
}

/// Run a batch through a classifier, in pieces if the model has a fixed batch size.
pub(super) fn classify_chunked(
    classifier: &mut dyn Classifier,
    pixels: &[f32],
    n: usize,
    per_image: usize,
) -> Result<Vec<f32>> {
    let step = classifier.fixed_batch().unwrap_or(n).max(1);
    let mut logits = Vec::new();
    for start in (0..n).step_by(step) {
        let count = step.min(n - start);
        logits.extend(classifier.classify(
            &pixels[start * per_image..(start + count) * per_image],
            count,
        )?);
    }
    Ok(logits)
}
