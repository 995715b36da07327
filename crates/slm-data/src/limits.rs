//! The size limits readers enforce, so that one malformed or hostile file cannot make them
//! buffer without bound. Errors that report a limit ([`Error::LineTooLong`],
//! [`EmailProblem::TooLarge`]) name it.
//!
//! [`Error::LineTooLong`]: crate::Error::LineTooLong
//! [`EmailProblem::TooLarge`]: crate::error::EmailProblem::TooLarge

/// The longest line a reader accepts by default (16 MiB), so a file without newlines cannot
/// make it buffer without bound.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// The largest message a reader accepts (32 MiB); larger files are
/// [`EmailProblem::TooLarge`](crate::error::EmailProblem::TooLarge) without being read whole.
pub const MAX_EMAIL_BYTES: u64 = 32 << 20;
