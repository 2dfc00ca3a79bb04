use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::Mutex;
use std::time::Duration;

use super::read_in_order;

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Items finishing in reverse order are still delivered in order, each once.
#[test]
fn items_finishing_out_of_order_are_delivered_in_order() {
    let mut got = Vec::new();
    read_in_order(
        &pool(4),
        40,
        4,
        || (),
        |seq, ()| {
            // Later items of a window finish first.
            std::thread::sleep(Duration::from_millis(3 * (4 - seq % 4) as u64));
            seq * 10
        },
        |item| {
            got.push(item);
            true
        },
    );
    assert_eq!(got, (0..40).map(|s| s * 10).collect::<Vec<_>>());
}

/// The buffers taken and not yet handed on never exceed the window, and do reach it.
#[test]
fn items_in_flight_are_bounded_by_the_window() {
    for window in [1, 2, 5] {
        let outstanding = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let mut delivered = 0;
        read_in_order(
            &pool(3),
            30,
            window,
            || {
                let now = outstanding.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
            },
            |seq, ()| seq,
            |seq| {
                assert_eq!(seq, delivered);
                delivered += 1;
                outstanding.fetch_sub(1, Ordering::SeqCst);
                true
            },
        );
        assert_eq!(delivered, 30);
        assert_eq!(most.load(Ordering::SeqCst), window, "window {window}");
    }
}

/// With a window of 2, the second item is read while the first is still being read: the first
/// waits for the second to start, which a one-at-a-time loader would never do (it would fail
/// here after the timeout, not hang).
#[test]
fn the_next_item_is_read_while_the_first_is_still_being_read() {
    let (started_tx, started_rx) = channel::<usize>();
    let started_rx = Mutex::new(started_rx);
    let mut got = Vec::new();
    read_in_order(
        &pool(2),
        2,
        2,
        || (),
        |seq, ()| {
            if seq == 1 {
                started_tx.send(1).unwrap();
                return true;
            }
            let rx = started_rx.lock().unwrap();
            rx.recv_timeout(Duration::from_secs(30)).is_ok()
        },
        |overlapped| {
            got.push(overlapped);
            true
        },
    );
    assert_eq!(got, [true, true], "item 0 did not see item 1 start");
}

/// A consumer that gives up stops the loader: it starts at most a window beyond what was handed on.
#[test]
fn a_consumer_that_gives_up_stops_the_reads() {
    let reads = AtomicUsize::new(0);
    let mut got = Vec::new();
    read_in_order(
        &pool(2),
        1000,
        3,
        || (),
        |seq, ()| {
            reads.fetch_add(1, Ordering::SeqCst);
            seq
        },
        |seq| {
            got.push(seq);
            seq < 4
        },
    );
    assert_eq!(got, [0, 1, 2, 3, 4]);
    assert!(reads.load(Ordering::SeqCst) <= 5 + 3, "{reads:?}");
}

/// A panic while reading reaches the caller instead of leaving the loader waiting for the item.
#[test]
fn a_panic_while_reading_reaches_the_caller() {
    let mut got = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        read_in_order(
            &pool(2),
            10,
            2,
            || (),
            |seq, ()| {
                assert!(seq != 3, "unreadable item");
                seq
            },
            |seq| {
                got.push(seq);
                true
            },
        )
    }));
    assert!(result.is_err());
    // Item 2 may or may not be handed on before item 3's panic arrives; nothing after it is.
    assert!(got.len() <= 3, "{got:?}");
    assert_eq!(got, (0..got.len()).collect::<Vec<_>>());
}

#[test]
fn nothing_to_read_delivers_nothing() {
    let mut calls = 0;
    read_in_order(
        &pool(1),
        0,
        3,
        || (),
        |seq, ()| seq,
        |_| {
            calls += 1;
            true
        },
    );
    assert_eq!(calls, 0);
}
