//! The report line of the echo load drivers (`echo_load`, `echo_tokio_client`): messages per
//! second and latency percentiles over every message's round trip, in the format
//! benches/echo.sh reads.

/// Prints `messages/s`, p50 and p99 (us) of `lat_us` (sorted here) over `secs`, then `what`.
pub fn print(mut lat_us: Vec<u32>, secs: f64, what: &str) {
    lat_us.sort_unstable();
    let pct = |p: f64| {
        lat_us
            .get(((lat_us.len() as f64 * p) as usize).min(lat_us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "messages/s: {:.0}  p50: {} us  p99: {} us  ({} messages, {what})",
        lat_us.len() as f64 / secs,
        pct(0.50),
        pct(0.99),
        lat_us.len(),
    );
}
