//! The fixed corpus behind the fuzz targets' invariants in `cargo test`:
//! seeds with a few bytes changed, and short random inputs, from a fixed
//! xorshift sequence so every run sees the same inputs (the coverage-guided
//! fuzzers in `fuzz/` go further).

/// Calls `check` on `rounds` inputs: every other one a seed (in turn) with
/// up to three bytes changed, the others random and shorter than
/// `max_random` bytes.
pub fn mutated(seeds: &[Vec<u8>], rounds: usize, max_random: u64, mut check: impl FnMut(&[u8])) {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..rounds {
        let mut data = if round % 2 == 0 {
            seeds[(round / 2) % seeds.len()].clone()
        } else {
            (0..(next() % max_random) as usize)
                .map(|_| next() as u8)
                .collect()
        };
        for _ in 0..(next() % 4) {
            if data.is_empty() {
                break;
            }
            let at = (next() as usize) % data.len();
            data[at] = next() as u8;
        }
        check(&data);
    }
}
