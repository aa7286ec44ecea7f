//! A recording actor shared by the runtime tests: it keeps every `(sender, seq)` pair it is
//! sent, and the checks that prove nothing was lost, duplicated or reordered per sender.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use percore::runtime::{Actor, Addr, Context, Reply, current_worker, sleep};

/// How long a test waits for items before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Records (sender, seq) pairs; answers with everything it saw.
#[derive(Default)]
pub struct Recorder {
    seen: Vec<(u32, u64)>,
}

/// What a [`Recorder`] is sent.
pub enum RecMsg {
    /// One item from sender `.0`, sequence number `.1`.
    Item(u32, u64),
    /// Everything recorded since the last dump.
    Dump(Reply<Vec<(u32, u64)>>),
    /// The app worker the recorder runs on.
    Where(Reply<Option<usize>>),
}

impl Actor for Recorder {
    type Msg = RecMsg;
    async fn handle(&mut self, msg: RecMsg, _ctx: &mut Context<Self>) {
        match msg {
            RecMsg::Item(s, n) => self.seen.push((s, n)),
            RecMsg::Dump(r) => {
                let _ = r.send(std::mem::take(&mut self.seen));
            }
            RecMsg::Where(r) => {
                let _ = r.send(current_worker());
            }
        }
    }
}

/// Collects everything the recorder saw until `total` items arrived (bounded wait). Ordering is
/// guaranteed per sender only, so a dump may overtake items still in flight from another sender.
pub async fn collect(rec: &Addr<Recorder>, total: usize) -> Vec<(u32, u64)> {
    let t0 = Instant::now();
    let mut all = Vec::new();
    while all.len() < total {
        assert!(
            t0.elapsed() < WAIT,
            "only {} of {total} items arrived",
            all.len()
        );
        all.extend(rec.ask(RecMsg::Dump, WAIT).await.unwrap());
        if all.len() < total {
            sleep(Duration::from_millis(1)).await;
        }
    }
    all
}

/// Every sender's items arrived as 0, 1, 2, … with none lost, duplicated or reordered, and
/// exactly the senders of `expected` delivered, each its count.
pub fn check_per_sender(seen: &[(u32, u64)], expected: &[(u32, u64)]) {
    let mut next: HashMap<u32, u64> = HashMap::new();
    for &(s, n) in seen {
        let e = next.entry(s).or_insert(0);
        assert_eq!(
            n, *e,
            "sender {s}: expected {e}, got {n} (lost, duplicated or reordered)"
        );
        *e += 1;
    }
    let want: HashMap<u32, u64> = expected.iter().copied().collect();
    assert_eq!(next, want, "items delivered per sender");
}

/// [`check_per_sender`] for senders `0..senders`, `per` items each.
pub fn check_per_sender_order(seen: &[(u32, u64)], senders: u32, per: u64) {
    let expected: Vec<(u32, u64)> = (0..senders).map(|s| (s, per)).collect();
    check_per_sender(seen, &expected);
}
