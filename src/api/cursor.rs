//! Opaque page cursors: what the last item of a page was, base64url-encoded. A cursor that
//! does not decode is the client's error (400), never a server one.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::ApiError;
use crate::model::Millis;

/// The timeline cursor of an appeal: its opening time and number.
pub(super) fn encode_appeal(opened_at: Millis, number: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("a:{opened_at}:{number}"))
}

pub(super) fn decode_appeal(cursor: &str) -> Result<(Millis, i64), ApiError> {
    let bad = || ApiError::bad_request("before is not a cursor this API gave");
    if cursor.len() > 128 {
        return Err(bad());
    }
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = text.strip_prefix("a:").ok_or_else(bad)?.split(':');
    let opened = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let number = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((opened, number))
}

/// A message's place in its appeal's order: (sequence, 0 where none was kept; sent time; id).
pub(super) type MessageKey = (i64, Millis, String);

/// The cursor of a message: its place in the appeal's order.
pub(super) fn encode_message((seq, sent_at, id): &MessageKey) -> String {
    URL_SAFE_NO_PAD.encode(format!("m:{seq}:{sent_at}:{id}"))
}

pub(super) fn decode_message(cursor: &str) -> Result<MessageKey, ApiError> {
    let bad = || ApiError::bad_request("after is not a cursor this API gave");
    if cursor.len() > 2048 {
        return Err(bad());
    }
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = text.strip_prefix("m:").ok_or_else(bad)?.splitn(3, ':');
    let seq = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let at = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
    let id = parts.next().ok_or_else(bad)?;
    Ok((seq, at, id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_decodes_to_what_it_encoded() {
        assert_eq!(decode_appeal(&encode_appeal(1_700_000_000_000, 42)).unwrap(), (1_700_000_000_000, 42));
    }

    #[test]
    fn a_message_cursor_keeps_ids_with_colons() {
        let key = (3, 5, "a:b".to_string());
        assert_eq!(decode_message(&encode_message(&key)).unwrap(), key);
        assert!(decode_message(&encode_appeal(5, 1)).is_err(), "an appeal cursor is not a message cursor");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in ["", "x", "YTox", "a:1:2", &"A".repeat(500), &URL_SAFE_NO_PAD.encode("a:1:2:3")] {
            assert!(decode_appeal(bad).is_err(), "{bad:?}");
        }
    }
}
