//! Running blocking jobs on a few threads at once: opening (recovering)
//! thousands of logs at start-up one after another leaves the disk idle
//! while each open waits on its reads; a handful of threads keep it busy.

use std::sync::Mutex;

/// `f` applied to every item on up to `threads` scoped threads; results in
/// the order of `items`. A panic in `f` propagates to the caller.
pub fn map<I: Send, O: Send>(items: Vec<I>, threads: usize, f: impl Fn(I) -> O + Sync) -> Vec<O> {
    let n = items.len();
    if threads <= 1 || n <= 1 {
        return items.into_iter().map(f).collect();
    }
    let queue = Mutex::new(items.into_iter().enumerate());
    let results: Mutex<Vec<Option<O>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.min(n) {
            s.spawn(|| loop {
                let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                let Some((i, item)) = next else { break };
                let out = f(item);
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(out);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .map(|o| o.expect("every item was mapped"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    #[test]
    fn keeps_order_and_runs_concurrently() {
        let running = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = map((0..32).collect(), 4, |i: u64| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, (0..32).map(|i| i * 2).collect::<Vec<_>>());
        let peak = peak.load(Ordering::SeqCst);
        assert!((2..=4).contains(&peak), "peak concurrency {peak}");
        assert_eq!(map(vec![7], 4, |i: i32| i + 1), vec![8]);
        assert!(map(Vec::<i32>::new(), 4, |i| i).is_empty());
    }
}
