//! Client-supplied text in messages: bounded. A name is shown so the caller
//! can see which one was wrong; a 16 MiB name is not echoed back into a log,
//! an error or a gRPC trailer.

/// At most this many bytes of client-supplied text go into an error message:
/// a name is shown, a 16 MiB name is not echoed.
pub const ECHO_BYTES: usize = 128;

/// A client-supplied string as error messages show it: whole if short, else
/// its first [`ECHO_BYTES`] bytes (on a character boundary) and its length.
pub fn clip(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= ECHO_BYTES {
        return s.into();
    }
    let mut end = ECHO_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len()).into()
}

/// The longest error message any protocol answer carries. Messages are built
/// from clipped client input, so this only trims lists (a model's 1,000
/// input names); it also keeps a gRPC trailer far below the 8 KiB clients
/// accept, so a client sees the error, not RESOURCE_EXHAUSTED.
pub const MAX_ERROR_BYTES: usize = 2048;

/// Trims an error message to [`MAX_ERROR_BYTES`].
pub fn bound_message(mut message: String) -> String {
    if message.len() > MAX_ERROR_BYTES {
        let mut end = MAX_ERROR_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push_str("… (truncated)");
    }
    message
}

/// Line and column (1-based, in characters) of a byte offset into `text`,
/// for errors that name `file:line:column` (config.pbtxt, the tenants
/// file). An offset inside a multi-byte character counts from the start of
/// that character (the fuzzer found a parser reporting one).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The first non-empty line of a message (libtorch's start with a newline
/// and go on with a traceback), for errors that must stay one line.
pub fn first_line(s: &str) -> &str {
    s.trim_start().lines().next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_strings_and_cuts_long_ones_on_a_char_boundary() {
        assert_eq!(clip("INPUT0"), "INPUT0");
        let long = "é".repeat(1000);
        let c = clip(&long);
        assert!(c.len() < ECHO_BYTES + 32, "{}", c.len());
        assert!(c.ends_with("(2000 bytes)"), "{c}");
        let m = bound_message("x".repeat(10_000));
        assert!(m.len() <= MAX_ERROR_BYTES + 16 && m.ends_with("(truncated)"));
    }
}
