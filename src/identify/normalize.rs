//! Value normalisation, so that the same person's phone written three ways compares equal.
//!
//! Phones become E.164 using the project's default region (`8 999 123-45-67`, `79991234567`
//! and `+7 (999) 123-45-67` are one number in RU); e-mails are trimmed and lower-cased;
//! custom field values are trimmed and case-folded. Pure functions: no I/O, no state.

/// Parsed numbers remembered per thread, at most this many per region. Parsing runs the
/// metadata regexes and was about a tenth of a batch's CPU; the same visitor's number is seen
/// with each of their messages.
const PHONE_MEMO_LIMIT: usize = 50_000;

type PhoneMemo = std::collections::HashMap<String, std::collections::HashMap<String, Result<String, String>>>;

thread_local! {
    /// Region → raw number → outcome: keyed this way a hit is looked up without allocating.
    static PHONE_MEMO: std::cell::RefCell<PhoneMemo> = std::cell::RefCell::new(PhoneMemo::new());
}

/// Normalises a phone number to E.164, or says why it is no valid number.
pub fn phone(raw: &str, region: &str) -> Result<String, String> {
    let hit = PHONE_MEMO.with(|m| m.borrow().get(region).and_then(|numbers| numbers.get(raw)).cloned());
    if let Some(hit) = hit {
        return hit;
    }
    let out = parse_phone(raw, region);
    PHONE_MEMO.with(|m| {
        let mut memo = m.borrow_mut();
        let numbers = memo.entry(region.to_string()).or_default();
        if numbers.len() >= PHONE_MEMO_LIMIT {
            numbers.clear(); // a bound, not an LRU: a miss only costs one parse
        }
        numbers.insert(raw.to_string(), out.clone());
    });
    out
}

/// Only a number valid for its country is a phone (SPEC identity rule 5): `12345` or, in an
/// RU project, `020 7946 0958` are not, whatever their shape. Read as libphonenumber reads it
/// (`super::phone`).
fn parse_phone(raw: &str, region: &str) -> Result<String, String> {
    let digits = raw.chars().filter(char::is_ascii_digit).count();
    if !(5..=15).contains(&digits) {
        return Err(format!("a phone number has 5 to 15 digits, this has {digits}"));
    }
    super::phone::e164(raw, region).ok_or_else(|| "not a valid phone number for its country".into())
}

/// Trims and lower-cases an e-mail address after a shape check (one `@`, a dotted domain).
pub fn email(raw: &str) -> Result<String, String> {
    let value = raw.trim().to_lowercase();
    let (local, domain) = value.split_once('@').ok_or("an e-mail address needs an @")?;
    let shape_ok = !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !value.chars().any(char::is_whitespace);
    if shape_ok {
        Ok(value)
    } else {
        Err("not an e-mail address".into())
    }
}

/// Trims and case-folds a custom field value; empty values are refused.
pub fn field(raw: &str) -> Result<String, String> {
    let value = raw.trim().to_lowercase();
    if value.is_empty() {
        Err("empty value".into())
    } else {
        Ok(value)
    }
}

/// Normalises a value for the named field or contact type.
pub fn value(kind: &str, raw: &str, region: &str) -> Result<String, String> {
    match kind {
        "phone" => phone(raw, region),
        "email" => email(raw),
        // A CRM id is another system's key: compared exactly (trimmed), and sent to the CRM
        // as it is.
        "crm_id" => {
            let v = raw.trim();
            if v.is_empty() {
                Err("empty value".into())
            } else {
                Ok(v.to_string())
            }
        }
        _ => field(raw),
    }
}

/// Masks every e-mail address and every run of five or more digits (a phone, however it is
/// written) in a free text: input values echoed by a DLQ reason, say, before it is logged.
pub fn mask_text(text: &str) -> String {
    static PATTERN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"[^\s\x22'<>()\[\]{},;:@]+@[^\s\x22'<>()\[\]{},;:]+|\+?\d(?:[\d\s\-().]*\d)?")
            .expect("static pattern")
    });
    PATTERN
        .replace_all(text, |c: &regex::Captures<'_>| {
            let found = &c[0];
            let digits = found.chars().filter(char::is_ascii_digit).count();
            if found.contains('@') || digits >= 5 {
                mask(found)
            } else {
                found.to_string()
            }
        })
        .into_owned()
}

/// Masks a phone or e-mail for logs: `+7999*****67`, `a***@example.com`.
pub fn mask(value: &str) -> String {
    if let Some((local, domain)) = value.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn national_bare_and_international_russian_forms_are_one_number() {
        let expected = "+79991234567";
        for raw in ["+7 (999) 123-45-67", "8 999 123 45 67", "89991234567", "79991234567", "9991234567"] {
            assert_eq!(phone(raw, "RU").unwrap(), expected, "{raw}");
        }
    }

    #[test]
    fn a_foreign_number_keeps_its_own_country_code() {
        assert_eq!(phone("+44 20 7946 0958", "RU").unwrap(), "+442079460958");
        assert_eq!(phone("020 7946 0958", "GB").unwrap(), "+442079460958");
    }

    #[test]
    fn text_that_is_no_phone_is_refused() {
        assert!(phone("hello", "RU").is_err());
        assert!(phone("12", "RU").is_err());
        assert!(phone("+7 000 000 00 00", "RU").is_err());
    }

    #[test]
    fn digits_that_are_no_valid_number_of_their_country_are_no_phone() {
        for raw in ["12345", "1-2-3-4-5", "020 7946 0958", "+7 12345"] {
            assert!(phone(raw, "RU").is_err(), "{raw} is no phone in RU");
        }
    }

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(email("  Alfred@Example.COM ").unwrap(), "alfred@example.com");
        assert!(email("alfred.example.com").is_err());
        assert!(email("al fred@example.com").is_err());
        assert!(email("alfred@localhost").is_err());
    }

    #[test]
    fn custom_fields_are_trimmed_and_case_folded() {
        assert_eq!(field("  D-100 ").unwrap(), "d-100");
        assert!(field("   ").is_err());
    }

    #[test]
    fn values_echoed_in_a_free_text_are_masked_and_short_numbers_kept() {
        let reason = r#"invalid type: integer 79267778899, expected a string at line 1 column 40; status for unknown message "+7 (916) 111-22-33" from Anna@Mail.ru in 2026"#;
        let masked = mask_text(reason);
        for secret in ["79267778899", "111-22-33", "Anna@Mail.ru"] {
            assert!(!masked.contains(secret), "{masked}");
        }
        assert!(masked.contains("line 1 column 40") && masked.contains("in 2026"), "{masked}");
    }

    #[test]
    fn masks_hide_the_middle_of_phones_and_the_local_part_of_emails() {
        assert_eq!(mask("+79991234567"), "+799******67");
        assert_eq!(mask("alfred@example.com"), "a***@example.com");
    }
}
