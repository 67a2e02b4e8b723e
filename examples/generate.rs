//! Writes a generated workload (see `appealflow::testkit`) as JSONL to stdout:
//! `cargo run --release --example generate -- 20000 [SEED] [--config-out FILE]
//! [--shape stress|conversations] > s.jsonl`.
//! `--config-out` also writes the config the workload is meant for (`testkit::CONFIG`), so
//! `appealflow replay --config FILE s.jsonl` can process it.

fn main() {
    let mut positional = Vec::new();
    let mut config_out = None;
    let mut shape = appealflow::testkit::Shape::STRESS;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config-out" => config_out = args.next(),
            "--shape" => {
                let name = args.next().unwrap_or_default();
                shape = appealflow::testkit::Shape::named(&name)
                    .unwrap_or_else(|| panic!("--shape is `stress` or `conversations`, not {name:?}"));
            }
            _ => positional.push(arg),
        }
    }
    let persons: usize = positional.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let seed: u64 = positional.get(1).and_then(|a| a.parse().ok()).unwrap_or(42);
    if let Some(path) = config_out {
        std::fs::write(&path, appealflow::testkit::CONFIG).expect("write the config file");
    }
    let workload = appealflow::testkit::generate_shaped(persons, seed, true, shape);
    for line in workload.lines {
        println!("{line}");
    }
}
