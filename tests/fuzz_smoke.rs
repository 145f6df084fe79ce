//! The fuzz targets' smoke run (the coverage-guided run is `tests/fuzz/run.sh`): each target
//! gets its seeds (`tests/fuzz/seeds/<target>`) and a few thousand mutants of them, from a
//! fixed PRNG so a failure repeats. A panic in any target fails the test with the input.

use std::path::Path;

type Target = fn(&[u8]);

/// xorshift64*: enough to mutate inputs repeatably.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes that matter to the parsers, spliced in whole.
const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"(",
    b")",
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"...",
    b"fragment F on T",
    b"...F",
    b"__schema",
    b"@skip(if: true)",
    b"$v",
    b"\"\"\"",
    b":",
    b",",
    b"null",
    b"1e999",
    b"query",
    b"mutation",
    b"subscription",
    b"\r\n",
    b"\x00",
    b"\xff",
    b"=",
    b"&",
    b"%",
    b"[[site]]",
    b"\x81\xfe\xff\xff",
    b"\x88\x80",
    b"eyJ",
    b".",
    b"\xf0\x9f\x98\x80",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 => input.insert(at, rng.next() as u8),
            2 if !input.is_empty() => {
                let end = (at + rng.below(16)).min(input.len());
                input.drain(at.min(end)..end);
            }
            3 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, t.iter().copied());
            }
            4 if !input.is_empty() => {
                // Repeat a slice: nesting, long runs.
                let start = rng.below(input.len());
                let end = (start + 1 + rng.below(32)).min(input.len());
                let piece = input[start..end].to_vec();
                for _ in 0..rng.below(64) {
                    input.splice(at..at, piece.iter().copied());
                }
            }
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                input.truncate(at);
                input.extend_from_slice(&other[from..]);
            }
            _ => input.truncate(at),
        }
    }
    input.truncate(64 * 1024);
}

fn smoke(name: &str, target: Target, rounds: usize) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz/seeds")
        .join(name);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds for {name}");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let run = |input: &[u8]| {
        let outcome = std::panic::catch_unwind(|| target(input));
        if outcome.is_err() {
            panic!(
                "{name} panicked on {:?}",
                String::from_utf8_lossy(input)
                    .chars()
                    .take(2000)
                    .collect::<String>()
            );
        }
    };
    for seed in &seeds {
        run(seed);
    }
    for i in 0..rounds {
        let mut input = seeds[i % seeds.len()].clone();
        mutate(&mut rng, &seeds, &mut input);
        run(&input);
    }
}

#[test]
fn graphql_request() {
    smoke(
        "graphql_request",
        graphfront::fuzzing::graphql_request,
        4000,
    );
}

#[test]
fn graphql_document() {
    smoke(
        "graphql_document",
        graphfront::fuzzing::graphql_document,
        4000,
    );
}

#[test]
fn jwt() {
    smoke("jwt", graphfront::fuzzing::jwt, 20000);
}

#[test]
fn websocket_frames() {
    smoke(
        "websocket_frames",
        graphfront::fuzzing::websocket_frames,
        4000,
    );
}

#[test]
fn config() {
    smoke("config", graphfront::fuzzing::config, 1500);
}
