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
