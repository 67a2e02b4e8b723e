//! Validating an answer against what an `ask` expects, and normalising the value to save.

use regex::Regex;

use crate::config::{AskBlock, Expect};
use crate::identify::normalize;

/// The value to save (normalised like every other value on a card), or why the answer is
/// refused. Clients pad answers with spaces and newlines, so checks see the trimmed text.
pub(super) fn accept(
    ask: &AskBlock,
    pattern: Option<&Result<Regex, String>>,
    text: &str,
    region: &str,
) -> Result<String, String> {
    let text = text.trim();
    let checked = match ask.expect {
        // Already normalised: E.164 / lower case, whatever field the value goes to.
        Expect::Phone => return normalize::phone(text, region),
        Expect::Email => return normalize::email(text),
        Expect::Number => number(text)?,
        Expect::Any => non_empty(text)?,
        Expect::Regex => full_match(pattern, text)?,
    };
    match &ask.save_to {
        // Saved to `phone` with expect = "any", say: it must still read as a phone.
        Some(field) => normalize::value(field, checked, region),
        None => Ok(checked.to_string()),
    }
}

/// Digits with an optional sign and an optional decimal part (`.` or `,`, as people type).
fn number(text: &str) -> Result<&str, String> {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once(['.', ',']) {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if digits(whole) && fraction.is_none_or(digits) {
        Ok(text)
    } else {
        Err("not a number: digits with an optional sign and decimal part expected".into())
    }
}

fn non_empty(text: &str) -> Result<&str, String> {
    if text.is_empty() {
        Err("empty answer".into())
    } else {
        Ok(text)
    }
}

fn full_match<'t>(pattern: Option<&Result<Regex, String>>, text: &'t str) -> Result<&'t str, String> {
    match pattern {
        Some(Ok(re)) if re.is_match(text) => Ok(text),
        Some(Ok(_)) => Err("does not match the expected format".into()),
        Some(Err(e)) => Err(e.clone()),
        None => Err("no pattern is configured".into()),
    }
}
