//! Model-checks the SPSC ring with loom: every interleaving of push/publish and pop/pop_batch on
//! a tiny ring must deliver items in order, exactly once.
//!
//! Run: `RUSTFLAGS="--cfg loom" cargo test --release --test loom_ring`
//! (without `--cfg loom` this file compiles to nothing).
#![cfg(loom)]

use percore::runtime::ring::ring;

#[test]
fn push_publish_pop_in_order() {
    loom::model(|| {
        let (mut p, mut c) = ring::<u32>(2);
        let t = loom::thread::spawn(move || {
            let mut next = 0;
            while next < 3 {
                if p.push(next).is_ok() {
                    next += 1;
                }
                p.publish();
                loom::thread::yield_now();
            }
        });
        let mut expect = 0;
        while expect < 3 {
            match c.pop() {
                Some(v) => {
                    assert_eq!(v, expect);
                    expect += 1;
                }
                None => loom::thread::yield_now(),
            }
        }
        t.join().unwrap();
    });
}

#[test]
fn batched_publish_and_batched_pop() {
    loom::model(|| {
        let (mut p, mut c) = ring::<u32>(4);
        let t = loom::thread::spawn(move || {
            p.push(0).unwrap();
            p.push(1).unwrap();
            p.publish();
            p.push(2).unwrap();
            p.publish();
        });
        let mut got = Vec::new();
        while got.len() < 3 {
            if c.pop_batch(4, |v| got.push(v)) == 0 {
                loom::thread::yield_now();
            }
        }
        assert_eq!(got, [0, 1, 2]);
        t.join().unwrap();
    });
}

/// The producer may still change its last pushed item until it publishes it (the mesh appends
/// messages to an unpublished batch this way); the consumer must see only the final value, and
/// never an item before it is published.
#[test]
fn last_unpublished_item_changes_until_publish() {
    loom::model(|| {
        let (mut p, mut c) = ring::<u32>(2);
        let t = loom::thread::spawn(move || {
            for base in [10u32, 20] {
                while p.push(base).is_err() {
                    loom::thread::yield_now();
                }
                *p.last_unpublished_mut()
                    .expect("just pushed, not published") += 1;
                p.publish();
                assert!(p.last_unpublished_mut().is_none());
            }
        });
        let mut got = Vec::new();
        while got.len() < 2 {
            match c.pop() {
                Some(v) => got.push(v),
                None => loom::thread::yield_now(),
            }
        }
        assert_eq!(got, [11, 21]);
        t.join().unwrap();
    });
}
