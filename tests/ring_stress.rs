//! Two real threads hammer the SPSC ring with sequenced items, random batch sizes and tiny
//! capacities: nothing may be lost, duplicated or reordered.

use percore::runtime::ring::ring;

/// A small deterministic PRNG (xorshift) so failures reproduce.
fn rng(mut s: u64) -> impl FnMut() -> u64 {
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

fn run(capacity: usize, items: u64, seed: u64) {
    let (mut p, mut c) = ring::<u64>(capacity);
    let producer = std::thread::spawn(move || {
        let mut r = rng(seed);
        let mut next = 0;
        while next < items {
            // Push a random-sized batch, publishing once.
            let batch = 1 + r() % 64;
            for _ in 0..batch {
                if next == items {
                    break;
                }
                match p.push(next) {
                    Ok(()) => next += 1,
                    Err(full) => {
                        assert_eq!(full.0, next, "Full hands the item back");
                        break;
                    }
                }
            }
            p.publish();
            if r().is_multiple_of(16) {
                std::thread::yield_now();
            }
        }
    });
    let mut r = rng(seed ^ 0x9e37_79b9);
    let mut expect = 0;
    while expect < items {
        if r().is_multiple_of(2) {
            c.pop_batch(1 + (r() % 128) as usize, |v| {
                assert_eq!(v, expect, "lost, duplicated or reordered");
                expect += 1;
            });
        } else if let Some(v) = c.pop() {
            assert_eq!(v, expect, "lost, duplicated or reordered");
            expect += 1;
        } else {
            std::hint::spin_loop();
        }
    }
    producer.join().unwrap();
    assert_eq!(c.pop(), None);
    assert!(c.is_abandoned());
}

#[test]
fn tiny_ring_many_wraparounds() {
    run(2, 50_000, 1);
}

#[test]
fn medium_ring_random_batches() {
    run(64, 150_000, 7);
}

#[test]
fn large_ring() {
    run(1024, 150_000, 42);
}

#[test]
fn boxed_items_cross_threads_intact() {
    let (mut p, mut c) = ring::<Box<(u64, String)>>(16);
    let t = std::thread::spawn(move || {
        for i in 0..50_000u64 {
            let mut item = Box::new((i, i.to_string()));
            loop {
                match p.push_now(item) {
                    Ok(()) => break,
                    Err(f) => {
                        item = f.0;
                        std::thread::yield_now();
                    }
                }
            }
        }
    });
    let mut n = 0;
    while n < 50_000 {
        if let Some(b) = c.pop() {
            assert_eq!(b.0, n);
            assert_eq!(b.1, n.to_string());
            n += 1;
        }
    }
    t.join().unwrap();
}
