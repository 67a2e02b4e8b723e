use super::*;

fn read(raw: &str, region: &str) -> Option<String> {
    e164(raw, region)
}

#[test]
fn a_russian_toll_free_number_is_read_in_every_spelling_people_type() {
    for raw in ["8 (800) 123-45-67", "+7 800 123-45-67", "88001234567", "+78001234567", "8-800-123-45-67"] {
        assert_eq!(read(raw, "RU").as_deref(), Some("+78001234567"), "{raw}");
    }
    assert_eq!(read("8 (808) 123-45-67", "RU").as_deref(), Some("+78081234567"));
}

#[test]
fn a_trunk_prefix_in_brackets_after_the_country_code_is_dropped() {
    assert_eq!(read("+44 (0)20 7946-0958", "RU").as_deref(), Some("+442079460958"));
    assert_eq!(read("+44 20 7946 0958", "RU").as_deref(), Some("+442079460958"));
    assert_eq!(read("020 7946 0958", "GB").as_deref(), Some("+442079460958"));
}

#[test]
fn the_home_countrys_exit_code_reads_as_a_plus_and_digits_with_a_country_code_as_international() {
    assert_eq!(read("00 44 20 7946 0958", "DE").as_deref(), Some("+442079460958"));
    assert_eq!(read("8 10 44 20 7946 0958", "RU").as_deref(), Some("+442079460958"));
    // WhatsApp's visitor ids are the number's digits, country code first.
    assert_eq!(read("79991234567", "RU").as_deref(), Some("+79991234567"));
    assert_eq!(read("442079460958", "RU").as_deref(), Some("+442079460958"));
}

#[test]
fn a_number_no_plan_holds_is_none() {
    for raw in ["12345", "+7 999 12", "8 (000) 000-00-00", "+999 123 456 789", "+44 (0)20 7946", ""] {
        assert_eq!(read(raw, "RU"), None, "{raw}");
    }
    assert_eq!(read("020 7946 0958", "RU"), None, "a British national number is not Russian");
}

#[test]
fn an_extension_or_text_after_the_number_is_not_part_of_it() {
    assert_eq!(read("+7 999 123-45-67 доб. 12", "RU").as_deref(), Some("+79991234567"));
    assert_eq!(read("+1 201-555-0123 ext 5", "US").as_deref(), Some("+12015550123"));
}

/// Every region's example numbers of every type (libphonenumber's metadata, as the crate
/// carries it), in the spellings people type: E.164, grouped with a plus, the national form
/// in the region itself, and the bare digits of a WhatsApp id.
#[test]
fn every_example_number_of_libphonenumber_reads_back_in_every_spelling() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for code in 1..=999u16 {
        let Some(regions) = DATABASE.region(&code) else { continue };
        for region in regions {
            let metas: Vec<&Metadata> = match DATABASE.by_id(region) {
                Some(m) => vec![m],
                None => DATABASE.by_code(&code).unwrap_or_default(),
            };
            for meta in metas {
                for example in examples(meta) {
                    checked += 1;
                    let want = format!("+{code}{example}");
                    let grouped = format!("+{code} {}", group(&example));
                    let mut spellings =
                        vec![(want.clone(), "ZZ"), (grouped, "ZZ"), (format!("{code}{example}"), "ZZ")];
                    if region != "001" {
                        spellings.push((national_form(meta, &want, &example), region));
                    }
                    if !is_valid(code, &example) {
                        failures.push(format!("{region} {want}: not valid"));
                    }
                    for (spelling, home) in spellings {
                        let got = read(&spelling, home);
                        if got.as_deref() != Some(want.as_str()) {
                            failures.push(format!("{region} {spelling:?} in {home}: {got:?}, want {want}"));
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} example numbers");
    assert!(failures.is_empty(), "{} of {checked} examples:\n{}", failures.len(), failures.join("\n"));
}

/// The number as libphonenumber's national format writes it (the crate's formatter, where
/// the crate reads the number right), else the trunk prefix and the national number.
fn national_form(meta: &Metadata, e164: &str, national: &str) -> String {
    let parsed = phonenumber::parse(None, e164).ok();
    let formatted = parsed.filter(|p| p.format().mode(phonenumber::Mode::E164).to_string() == e164);
    match formatted {
        Some(p) => p.format().mode(phonenumber::Mode::National).to_string(),
        None => format!("{}{national}", meta.national_prefix().unwrap_or_default()),
    }
}

fn examples(meta: &Metadata) -> Vec<String> {
    let d = meta.descriptors();
    let types = [
        d.fixed_line(),
        d.mobile(),
        d.toll_free(),
        d.premium_rate(),
        d.shared_cost(),
        d.personal_number(),
        d.voip(),
        d.pager(),
        d.uan(),
        d.voicemail(),
    ];
    types.into_iter().flatten().filter_map(|t| t.example().map(str::to_string)).collect()
}

/// Digits in groups of three and four, as people space them.
fn group(digits: &str) -> String {
    let (head, tail) = digits.split_at(digits.len().min(3));
    let tail: Vec<String> =
        tail.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    format!("{head} {}", tail.join("-"))
}
