//! Writes a generated workload (see `appealflow::testkit`) as JSONL to stdout, with its
//! config to `--config-out FILE`: `cargo run --release --example generate -- 20000 > s.jsonl`.

fn main() {
    let mut args = std::env::args().skip(1);
    let persons: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(42);
    let workload = appealflow::testkit::generate(persons, seed);
    for line in workload.lines {
        println!("{line}");
    }
}
