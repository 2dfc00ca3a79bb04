//! The loader that feeds a single inference worker (a GPU, or `--inference-workers 1`): several
//! batches decode at once on the loader pool and are handed on in order.
//!
//! Decoding one batch at a time across the pool makes every core wait for the batch's slowest
//! image before the next batch starts: a tail that grows with the number of cores and with how
//! much image sizes vary. Here up to `window` batches are read at once, so a core that has
//! finished its share of one batch takes images of the next; finished batches wait in a reorder
//! buffer until every earlier one has been handed on, so inference sees them in dataset order and
//! the results are those of the one-batch-at-a-time loader, byte for byte.

use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::channel;

/// Read items `0..count` on `pool`, up to `window` of them at once, and give each to `deliver` in
/// order of sequence number; stop early when `deliver` says false.
///
/// `window` (at least 1) bounds the items between `buffer` and `deliver`'s return: being read, or
/// read and waiting for an earlier one or for `deliver`. `buffer` is called on the calling thread
/// for each item before it is read (to reuse memory); `read` runs on the pool, and may itself run
/// parallel iterators there. A panic in `read` stops the loader and is raised again here once the
/// items already started have finished.
pub fn read_in_order<B: Send, T: Send>(
    pool: &rayon::ThreadPool,
    count: usize,
    window: usize,
    mut buffer: impl FnMut() -> B,
    read: impl Fn(usize, B) -> T + Sync,
    mut deliver: impl FnMut(T) -> bool,
) {
    let window = window.max(1);
    let read = &read;
    let (done_tx, done_rx) = channel::<(usize, std::thread::Result<T>)>();
    let mut panicked = None;
    pool.in_place_scope(|scope| {
        let (mut started, mut delivered) = (0, 0);
        let mut ready: BTreeMap<usize, T> = BTreeMap::new();
        while delivered < count {
            // Refilled after every item handed on, so no core idles while the window has room.
            while started < count && started - delivered < window {
                let (seq, input, done) = (started, buffer(), done_tx.clone());
                scope.spawn(move |_| {
                    let _ = done.send((
                        seq,
                        panic::catch_unwind(AssertUnwindSafe(|| read(seq, input))),
                    ));
                });
                started += 1;
            }
            if let Some(item) = ready.remove(&delivered) {
                if !deliver(item) {
                    break;
                }
                delivered += 1;
                continue;
            }
            // Never disconnected: this thread holds a sender. Each started item sends once.
            let Ok((seq, item)) = done_rx.recv() else {
                break;
            };
            match item {
                Ok(item) => {
                    ready.insert(seq, item);
                }
                Err(payload) => {
                    panicked = Some(payload);
                    break;
                }
            }
        }
        // The scope waits for the items still being read; their results are dropped.
    });
    if let Some(payload) = panicked {
        panic::resume_unwind(payload);
    }
}

#[cfg(test)]
mod tests;
