//! Fuzz target bodies and a small seeded mutation loop, shared by the
//! cargo-fuzz targets in `/fuzz` (nightly, libFuzzer) and the stable
//! replay tests that `cargo test` runs in CI.
//!
//! A target body takes arbitrary bytes and must return for every input:
//! no panic, no abort, no unbounded allocation. The fuzz targets call the
//! bodies unchanged, so a committed corpus file that reached some code
//! under libFuzzer reaches the same code under `cargo test`.
//!
//! The mutation loop is deliberately simple (bit flips, byte sets,
//! interesting integers, truncations, deletions, duplications, splices
//! between corpus files): it is not a coverage-guided fuzzer, only a few
//! seconds of "near the corpus" inputs on every CI run. Its seed is
//! printed, and `RIVULET_FUZZ_SEED` replays a run; `RIVULET_FUZZ_SECONDS`
//! makes it longer.

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use bytes::Bytes;

use crate::request::decode_request as decode;

/// The `decode_request` target: arbitrary bytes as a request frame body
/// (what follows the 4-byte size prefix).
pub fn decode_request(data: &[u8]) {
    let _ = decode(Bytes::copy_from_slice(data));
}

/// A small, fast, seeded generator (xorshift64*): reproducible mutation
/// runs without a dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        // The state must not be zero; any other value works.
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Values that make length and count fields interesting, big endian.
const INTERESTING: &[&[u8]] = &[
    &[0x00],
    &[0xff],
    &[0x7f],
    &[0x80],
    &[0x00, 0x00],
    &[0xff, 0xff],
    &[0x7f, 0xff],
    &[0x80, 0x00],
    &[0x00, 0x00, 0x00, 0x00],
    &[0xff, 0xff, 0xff, 0xff],
    &[0x7f, 0xff, 0xff, 0xff],
    &[0x80, 0x00, 0x00, 0x00],
    &[0x00, 0x00, 0x01, 0x00],
    &[0x00, 0x10, 0x00, 0x00],
];

/// One to four random edits of `input`, possibly splicing in part of
/// `other` (another corpus file).
pub fn mutate(rng: &mut Rng, input: &[u8], other: &[u8], max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        edit(rng, &mut out, other);
    }
    out.truncate(max_len);
    out
}

fn edit(rng: &mut Rng, out: &mut Vec<u8>, other: &[u8]) {
    let len = out.len();
    match rng.below(8) {
        0 if len > 0 => {
            let at = rng.below(len);
            out[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            out[at] = rng.next_u64() as u8;
        }
        2 if len > 0 => {
            let value = INTERESTING[rng.below(INTERESTING.len())];
            let at = rng.below(len);
            let end = (at + value.len()).min(len);
            out[at..end].copy_from_slice(&value[..end - at]);
        }
        3 => out.truncate(rng.below(len + 1)),
        4 if len > 0 => {
            let at = rng.below(len);
            let end = at + rng.below(len - at + 1);
            out.drain(at..end);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let end = at + rng.below((len - at).min(64) + 1);
            let chunk = out[at..end].to_vec();
            let to = rng.below(len + 1);
            out.splice(to..to, chunk);
        }
        6 if !other.is_empty() => {
            // Keep a prefix of this input, continue with a tail of the other.
            let keep = rng.below(len + 1);
            let from = rng.below(other.len());
            out.truncate(keep);
            out.extend_from_slice(&other[from..]);
        }
        _ => {
            let at = rng.below(len + 1);
            let count = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..count).map(|_| rng.next_u64() as u8).collect();
            out.splice(at..at, bytes);
        }
    }
}

/// Every file directly in `dirs` (missing directories and files that
/// vanish meanwhile are skipped), sorted by path so a run is reproducible.
pub fn read_corpus(dirs: &[PathBuf]) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<PathBuf> = dirs
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| match std::fs::read(&p) {
            Ok(bytes) => Some((p, bytes)),
            // A fuzzer running on the same directory replaces files.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("read {}: {e}", p.display()),
        })
        .collect()
}

/// The mutation seed: `RIVULET_FUZZ_SEED` when set (to replay a run),
/// otherwise taken from the clock.
pub fn seed_from_env() -> u64 {
    match std::env::var("RIVULET_FUZZ_SEED") {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("RIVULET_FUZZ_SEED={s} is not a u64")),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    }
}

/// How long a mutation loop runs: `RIVULET_FUZZ_SECONDS` when set (for a
/// longer local run), otherwise `default`.
pub fn budget_from_env(default: Duration) -> Duration {
    match std::env::var("RIVULET_FUZZ_SECONDS") {
        Ok(s) => Duration::from_secs(
            s.parse()
                .unwrap_or_else(|_| panic!("RIVULET_FUZZ_SECONDS={s} is not a number of seconds")),
        ),
        Err(_) => default,
    }
}

/// What one [`exercise`] run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exercised {
    /// Corpus files replayed.
    pub replayed: usize,
    /// Mutated inputs run after the replay.
    pub mutated: usize,
}

thread_local! {
    /// The message of a panic on this thread, even one caught inside the
    /// body (the request decoder catches its own): libFuzzer counts those
    /// as crashes, and so does this loop.
    static PANICKED: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn install_panic_recorder() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.with(|p| *p.borrow_mut() = Some(info.to_string()));
            previous(info);
        }));
    });
}

/// Runs `body` on every corpus file, then on mutations of them until
/// `budget` has passed; panics (naming the seed and saving the input to
/// the temporary directory) if any input made `body` panic, caught or not.
pub fn exercise(
    target: &str,
    corpus: &[(PathBuf, Vec<u8>)],
    seed: u64,
    budget: Duration,
    max_len: usize,
    body: impl Fn(&[u8]),
) -> Exercised {
    install_panic_recorder();
    println!("{target}: mutation seed {seed} (RIVULET_FUZZ_SEED={seed} replays it)");
    for (path, input) in corpus {
        run_one(
            target,
            input,
            &format!("corpus file {}", path.display()),
            &body,
        );
    }
    let mut rng = Rng::new(seed);
    let started = Instant::now();
    let mut mutated = 0;
    while !corpus.is_empty() && started.elapsed() < budget {
        let base = &corpus[rng.below(corpus.len())].1;
        let other = &corpus[rng.below(corpus.len())].1;
        let input = mutate(&mut rng, base, other, max_len);
        run_one(
            target,
            &input,
            &format!("mutation {mutated} of seed {seed}"),
            &body,
        );
        mutated += 1;
    }
    println!(
        "{target}: {} corpus files, {mutated} mutations in {:?}",
        corpus.len(),
        started.elapsed()
    );
    Exercised {
        replayed: corpus.len(),
        mutated,
    }
}

fn run_one(target: &str, input: &[u8], what: &str, body: &impl Fn(&[u8])) {
    PANICKED.with(|p| p.borrow_mut().take());
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| body(input)));
    let panicked = PANICKED.with(|p| p.borrow_mut().take());
    if outcome.is_err() || panicked.is_some() {
        let saved = save_crash(target, input);
        panic!(
            "{target} panicked on {what}: {}; input saved to {}",
            panicked.unwrap_or_default(),
            saved.display()
        );
    }
}

fn save_crash(target: &str, input: &[u8]) -> PathBuf {
    let name = format!("rivulet-fuzz-{target}-crash-{}", std::process::id());
    let path = std::env::temp_dir().join(name);
    // Best effort: failing to save must not hide the crash itself.
    let _ = std::fs::write(&path, input);
    path
}

/// The committed seed and corpus directories of `target` under the
/// repository's `fuzz/` directory, given the manifest directory of the
/// calling crate (two levels below the repository root).
pub fn corpus_dirs(manifest_dir: &str, target: &str) -> Vec<PathBuf> {
    let fuzz = Path::new(manifest_dir).join("../../fuzz");
    vec![
        fuzz.join("seeds").join(target),
        fuzz.join("corpus").join(target),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_mutations() {
        let input = b"0123456789abcdef".to_vec();
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..50)
                .map(|_| mutate(&mut rng, &input, b"other", 64))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(10));
        assert!(run(7).iter().any(|m| m != &input));
    }

    #[test]
    fn mutations_respect_the_length_limit() {
        let mut rng = Rng::new(1);
        for _ in 0..1000 {
            assert!(mutate(&mut rng, &[7; 30], &[9; 30], 32).len() <= 32);
        }
    }

    #[test]
    fn a_caught_panic_still_fails_the_loop() {
        let corpus = vec![(PathBuf::from("x"), b"boom".to_vec())];
        let result = std::panic::catch_unwind(|| {
            exercise("selftest", &corpus, 1, Duration::ZERO, 16, |input| {
                if input == b"boom" {
                    // Caught here, as decode_request catches decoder panics.
                    let _ = std::panic::catch_unwind(|| panic!("inner"));
                }
            })
        });
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.contains("selftest panicked on corpus file x"),
            "{message}"
        );
        assert!(message.contains("inner"), "{message}");
        let saved = message.rsplit("input saved to ").next().unwrap();
        assert_eq!(std::fs::read(saved).unwrap(), b"boom");
        std::fs::remove_file(saved).unwrap();
    }
}
