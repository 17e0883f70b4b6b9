//! The `decode_request` fuzz target on the stable toolchain: every
//! committed seed and corpus file (`fuzz/seeds/decode_request`,
//! `fuzz/corpus/decode_request`) through the target's body, then a few
//! seconds of seeded mutations of them. CI runs this with `cargo test`;
//! the long coverage-guided runs are libFuzzer's (see `fuzz/README.md`).
//! `RIVULET_FUZZ_SEED` replays a mutation run whose seed a failure printed;
//! `RIVULET_FUZZ_SECONDS` runs the mutations longer.

use std::time::Duration;

use rivulet_wire::{alloc::LazyLargeAlloc, fuzzing};

/// As in the broker and the fuzz target: hostile array lengths cost
/// address space, not an abort.
#[global_allocator]
static GLOBAL: LazyLargeAlloc = LazyLargeAlloc;

#[test]
fn decode_request_survives_its_corpus_and_mutations() {
    let dirs = fuzzing::corpus_dirs(env!("CARGO_MANIFEST_DIR"), "decode_request");
    let corpus = fuzzing::read_corpus(&dirs);
    assert!(
        corpus.len() >= 10,
        "expected the committed seeds in {}",
        dirs[0].display()
    );
    let done = fuzzing::exercise(
        "decode_request",
        &corpus,
        fuzzing::seed_from_env(),
        fuzzing::budget_from_env(Duration::from_secs(3)),
        4096,
        fuzzing::decode_request,
    );
    assert_eq!(done.replayed, corpus.len());
    assert!(done.mutated > 0, "no mutation ran");
}
