//! Bounds every service checks the same way: message bodies, the users a
//! service names, status texts.

use super::{ErrorBody, ErrorCode, UserRef};

/// Most characters in a message, DM or broadcast body (the schemas' `maxLength`).
pub const MAX_BODY_CHARS: usize = 4096;

/// A body: not empty, at most [`MAX_BODY_CHARS`] characters and
/// `max_bytes` bytes (`too_large` otherwise).
pub fn check_body(body: &str, max_bytes: usize) -> Result<(), ErrorBody> {
    if body.is_empty() {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "body must not be empty",
        ));
    }
    if body.len() > max_bytes || body.chars().count() > MAX_BODY_CHARS {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!("body is over {MAX_BODY_CHARS} characters or {max_bytes} bytes"),
        ));
    }
    Ok(())
}

/// Most distinct emoji on one message.
pub const MAX_EMOJI_PER_MESSAGE: usize = 20;

/// A reaction's emoji: one grapheme cluster (what a reader sees as one
/// symbol, skin tones and joined families included) of at most 32 bytes,
/// not a control or space character.
pub fn check_emoji(emoji: &str) -> Result<(), ErrorBody> {
    use unicode_segmentation::UnicodeSegmentation;
    let one = emoji.graphemes(true).count() == 1;
    let printable = !emoji.chars().any(|c| c.is_control() || c.is_whitespace());
    if !one || emoji.len() > 32 || !printable {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            "emoji must be one symbol (a grapheme cluster) of at most 32 bytes",
        ));
    }
    Ok(())
}

/// A user named by a service (it came from a verified token; bound it
/// anyway): an id and a name of 1–64 characters each.
pub fn check_user(user: &UserRef) -> Result<(), ErrorBody> {
    let ok = |s: &str| !s.is_empty() && s.chars().count() <= 64;
    if !ok(&user.id) || !ok(&user.name) {
        return Err(ErrorBody::new(ErrorCode::BadRequest, "bad user"));
    }
    Ok(())
}

/// Longest status text, in characters.
pub const MAX_STATUS_TEXT_CHARS: usize = 128;

#[cfg(test)]
mod emoji_tests {
    use super::check_emoji;

    #[test]
    fn an_emoji_is_one_grapheme_of_at_most_32_bytes() {
        for ok in ["👍", "🎉", "a", "👩‍👩‍👧‍👦", "👍🏽", "🇫🇷", "❤️"]
        {
            assert!(check_emoji(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "👍👍",
            "ab",
            " ",
            "\n",
            "\u{7}",
            "🇫🇷🇫🇷",
            &"👍🏽".repeat(5),
        ] {
            assert!(check_emoji(bad).is_err(), "{bad:?}");
        }
        // One grapheme, but a long one: a base with 20 combining marks.
        let long = format!("a{}", "\u{301}".repeat(20));
        assert!(check_emoji(&long).is_err());
    }
}
