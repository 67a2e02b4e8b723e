//! Reading a phone number as Google's libphonenumber does, over the metadata the `phonenumber`
//! crate carries. The crate's own parser strips a trunk prefix wherever it finds one (`+7 800
//! 123-45-67` became `+7001234567`) and keeps one written in brackets after a country code
//! (`+44 (0)20 7946 0958`); libphonenumber strips it only where the number without it still
//! fits the country's plan, and a number is valid when a type of the country's plan matches
//! it whole. This module follows libphonenumber's parse: the international form (`+`, or the
//! home country's exit code), else the national form with its trunk prefix stripped by that
//! rule, else (WhatsApp's visitor ids) digits that begin with a country code.

use std::collections::HashMap;
use std::sync::{LazyLock, RwLock};

use phonenumber::metadata::{Descriptor, DATABASE};
use phonenumber::Metadata;
use regex::Regex;

/// The E.164 form of `raw` read in `region` (ISO code), or `None` when no country's plan
/// holds it.
pub fn e164(raw: &str, region: &str) -> Option<String> {
    let (plus, digits) = number_part(raw);
    if plus {
        return international(&digits);
    }
    if let Some(home) = DATABASE.by_id(region) {
        if let Some(rest) = exit_code(home, &digits) {
            return international(rest);
        }
        let national = strip_trunk_prefix(home, &digits);
        if is_valid(home.country_code(), &national) {
            return Some(format!("+{}{national}", home.country_code()));
        }
    }
    international(&digits)
}

/// Whether the number leads with a plus, and its digits: what comes before an extension
/// (`доб. 12`, `ext 5`, `#3`) or any other text.
fn number_part(raw: &str) -> (bool, String) {
    let trimmed = raw.trim();
    let plus = trimmed.starts_with(['+', '＋']);
    let number = trimmed.trim_start_matches(['+', '＋']);
    let digits = number
        .chars()
        .take_while(|c| c.is_ascii_digit() || " -‐‑–—().\u{a0}/".contains(*c))
        .filter(char::is_ascii_digit)
        .collect();
    (plus, digits)
}

/// A country code (country codes are prefix-free: at most one of 1-3 leading digits is one),
/// then the national number after it, its trunk prefix stripped where the plan allows.
fn international(digits: &str) -> Option<String> {
    if digits.starts_with('0') {
        return None; // no country code starts with 0
    }
    (1..=3.min(digits.len())).find_map(|len| {
        let code: u16 = digits[..len].parse().ok()?;
        let main = main_metadata(code)?;
        let national = strip_trunk_prefix(main, &digits[len..]);
        is_valid(code, &national).then(|| format!("+{code}{national}"))
    })
}

/// The metadata of the region a country code belongs to first (`RU` for 7, `US` for 1; the
/// non-geographic entity for 800, 808, ...).
fn main_metadata(code: u16) -> Option<&'static Metadata> {
    let regions = DATABASE.region(&code)?;
    let main = regions.first()?;
    DATABASE.by_id(*main).or_else(|| DATABASE.by_code(&code)?.into_iter().next())
}

/// The rest of `digits` after the home country's exit code (`00`, `810`), when they start with
/// one and what follows does not start with a 0 (libphonenumber's rule: no country code does).
fn exit_code<'a>(home: &Metadata, digits: &'a str) -> Option<&'a str> {
    let pattern = anchored(home.international_prefix()?.as_str());
    let rest = &digits[pattern.find(digits)?.end()..];
    (!rest.is_empty() && !rest.starts_with('0')).then_some(rest)
}

/// libphonenumber's `maybeStripNationalPrefixAndCarrierCode` and the length check after it:
/// the trunk prefix (with a transform rule, the national form it stands for) is taken off
/// unless the number fit the plan with it and no longer does without, or what is left is too
/// short to be a number of the country.
fn strip_trunk_prefix(meta: &Metadata, national: &str) -> String {
    let general = meta.descriptors().general();
    let pattern = match (meta.national_prefix_for_parsing(), meta.national_prefix()) {
        (Some(re), _) => anchored(re.as_str()),
        (None, Some(prefix)) => anchored(&regex::escape(prefix)),
        (None, None) => return national.to_string(),
    };
    let Some(found) = pattern.captures(national) else { return national.to_string() };
    let whole = found.get(0).expect("group 0 is the match");
    // The transform applies when its last group took part in the match (libphonenumber).
    let last = (found.len() > 1).then(|| found.get(found.len() - 1)).flatten();
    let stripped = match (meta.national_prefix_transform_rule().filter(|r| !r.is_empty()), last) {
        (Some(rule), Some(_)) => {
            let mut out = String::new();
            found.expand(&java_replacement(rule), &mut out);
            out + &national[whole.end()..]
        }
        _ => national[whole.end()..].to_string(),
    };
    let viable_before = full_match(general, national);
    if viable_before && !full_match(general, &stripped) {
        return national.to_string();
    }
    if length_fits(meta, stripped.len()) {
        stripped
    } else {
        national.to_string()
    }
}

/// libphonenumber's `testNumberLength` for an unknown type: neither too short, nor a local-only
/// length, nor a length the plan never has. The lengths are those of the plan's types (the
/// crate leaves the general descriptor's empty, where libphonenumber fills in their union).
fn length_fits(meta: &Metadata, len: usize) -> bool {
    let len = len as u16;
    let (mut possible, mut local) = (Vec::new(), Vec::new());
    for desc in types(meta).into_iter().flatten() {
        possible.extend_from_slice(desc.possible_length());
        local.extend_from_slice(desc.possible_local_length());
    }
    // As libphonenumber builds its general descriptor: a length some type dials in full is no
    // local-only length.
    local.retain(|l| !possible.contains(l));
    let (Some(min), Some(max)) = (possible.iter().min(), possible.iter().max()) else { return false };
    !local.contains(&len) && len >= *min && (possible.contains(&len) || len > *max)
}

/// The descriptors of a plan's number types, in libphonenumber's order of `getNumberType`.
fn types(meta: &Metadata) -> [Option<&Descriptor>; 10] {
    let d = meta.descriptors();
    [
        d.premium_rate(),
        d.toll_free(),
        d.shared_cost(),
        d.voip(),
        d.personal_number(),
        d.pager(),
        d.uan(),
        d.voicemail(),
        d.fixed_line(),
        d.mobile(),
    ]
}

/// libphonenumber's `isValidNumber`: the region of the code the number belongs to (by its
/// leading digits where several share the code), and a type of that region's plan matching
/// it whole.
pub fn is_valid(code: u16, national: &str) -> bool {
    let Some(regions) = DATABASE.region(&code) else { return false };
    let metas: Vec<&Metadata> = match regions.as_slice() {
        [_] => main_metadata(code).into_iter().collect(),
        many => many.iter().filter_map(|r| DATABASE.by_id(*r)).collect(),
    };
    let region = metas.iter().find(|meta| match meta.leading_digits() {
        Some(leading) if metas.len() > 1 => anchored(leading.as_str()).is_match(national),
        _ => has_type(meta, national),
    });
    region.is_some_and(|meta| has_type(meta, national))
}

/// libphonenumber's `getNumberTypeHelper` is not `UNKNOWN`.
fn has_type(meta: &Metadata, national: &str) -> bool {
    if !full_match(meta.descriptors().general(), national) {
        return false;
    }
    types(meta).into_iter().flatten().any(|desc| {
        let lengths = desc.possible_length();
        (lengths.is_empty() || lengths.contains(&(national.len() as u16))) && full_match(desc, national)
    })
}

/// A descriptor's national number pattern matches all of `national` (the crate's own check
/// accepts a match of its beginning).
fn full_match(desc: &Descriptor, national: &str) -> bool {
    whole(desc.national_number().as_str()).is_match(national)
}

/// `pattern` matching at the start of a text (Java's `lookingAt`).
fn anchored(pattern: &str) -> Regex {
    compiled(format!("^(?:{pattern})"))
}

/// `pattern` matching a whole text (Java's `matches`).
fn whole(pattern: &str) -> Regex {
    compiled(format!("^(?:{pattern})$"))
}

/// Compiled once for the process: the metadata holds a few thousand patterns, each used for
/// every number of its country.
fn compiled(pattern: String) -> Regex {
    static CACHE: LazyLock<RwLock<HashMap<String, Regex>>> = LazyLock::new(RwLock::default);
    if let Some(re) = CACHE.read().expect("pattern cache").get(&pattern) {
        return re.clone();
    }
    // Metadata patterns are libphonenumber's own and compile; one that did not would match
    // nothing rather than stop the stream.
    // The metadata's patterns are laid out over several lines: whitespace is no part of them.
    let built = regex::RegexBuilder::new(&pattern).ignore_whitespace(true).build();
    let re = built.unwrap_or_else(|_| Regex::new("[^\\s\\S]").expect("static pattern"));
    CACHE.write().expect("pattern cache").insert(pattern, re.clone());
    re
}

/// A transform rule in Java's replacement syntax (`9$1`) in the regex crate's (`9${1}`).
fn java_replacement(rule: &str) -> String {
    let group = Regex::new(r"\$(\d)").expect("static pattern");
    group.replace_all(rule, "$${$1}").into_owned()
}

#[cfg(test)]
mod tests;
