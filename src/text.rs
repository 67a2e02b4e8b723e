//! Small text helpers every layer uses, below all of them: the id rule, and cutting a text
//! a message may quote (an input value echoed in a reason) to a bound.

/// Identifiers: message, command, visitor, external and client ids, channel and project ids,
/// tags, categories, field names. An e-mail visitor ID is an address (at most 254 bytes).
pub const MAX_ID_BYTES: usize = 256;

/// An identifier a stage keys on: not empty, at most [`MAX_ID_BYTES`], no control characters
/// (ids are joined with one to derive others, and end up in logs and keys). The error says
/// what is wrong, for a reason to name the field before it.
pub fn check_id(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_ID_BYTES {
        return Err(format!("is {} bytes, the limit is {MAX_ID_BYTES}", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err("holds a control character".into());
    }
    Ok(())
}

/// `text` cut to at most `max` bytes (on a character boundary), marked with `…` when cut.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A key as a reason may quote it: at most 64 characters.
pub fn shorten(text: &str) -> String {
    match text.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}
