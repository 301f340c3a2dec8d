//! The text format: config.pbtxt into [`ModelConfig`], errors located at
//! `file:line:column` and named by field.

use std::path::Path;

use miette::Diagnostic;
use prost_reflect::{DynamicMessage, ReflectMessage};

use crate::proto::ModelConfig;

pub const CONFIG_FILE: &str = "config.pbtxt";

/// A config that could not be read, parsed or accepted. The message names
/// the file, and for parse errors the line, column and field.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// An error in `file`: the message is prefixed with its path.
    pub fn at(file: &Path, msg: impl std::fmt::Display) -> Self {
        Self(format!("{}: {msg}", file.display()))
    }
}

/// Parses config.pbtxt text. Unknown fields, bad enum values, wrong types and
/// syntax errors are errors naming `file:line:column`.
pub fn parse_text(file: &Path, text: &str) -> Result<ModelConfig, ConfigError> {
    let desc = ModelConfig::default().descriptor();
    let normalized = colon_before_lists(text);
    let dynamic = DynamicMessage::parse_text_format(desc, &normalized).map_err(|e| {
        let location = e
            .labels()
            .and_then(|mut l| l.next())
            .map(|span| kiln_types::text::line_col(text, span.offset()))
            .map(|(line, col)| format!(":{line}:{col}"))
            .unwrap_or_default();
        ConfigError(format!("{}{location}: {e}", file.display()))
    })?;
    dynamic
        .transcode_to::<ModelConfig>()
        .map_err(|e| ConfigError::at(file, format!("cannot decode config: {e}")))
}

/// Protobuf text format lets a repeated message field use the list form
/// without a colon (`input [ { ... } ]`), and every Triton config does; the
/// prost-reflect parser insists on `input: [`. This adds the colon, in place
/// of the whitespace before `[` where there is some, so that byte offsets and
/// therefore reported line:column positions stay those of the user's file.
/// Strings and `#` comments are left alone.
pub(crate) fn colon_before_lists(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut edits: Vec<(usize, bool)> = Vec::new(); // (offset, replace whitespace?)
    let mut i = 0;
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            q @ (b'"' | b'\'') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' => {
                let mut j = i;
                while j > 0 && bytes[j - 1].is_ascii_whitespace() {
                    j -= 1;
                }
                let ident_end = j;
                while j > 0 && is_ident(bytes[j - 1]) {
                    j -= 1;
                }
                let mut k = j;
                while k > 0 && bytes[k - 1].is_ascii_whitespace() {
                    k -= 1;
                }
                let after_colon = k > 0 && bytes[k - 1] == b':';
                if ident_end > j && !bytes[j].is_ascii_digit() && !after_colon {
                    edits.push((ident_end, ident_end < i));
                }
            }
            _ => {}
        }
        i += 1;
    }
    if edits.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + edits.len());
    let mut last = 0;
    for (at, replace) in edits {
        out.push_str(&text[last..at]);
        out.push(':');
        last = if replace { at + 1 } else { at };
    }
    out.push_str(&text[last..]);
    std::borrow::Cow::Owned(out)
}

/// Reads and parses `<model_dir>/config.pbtxt`.
pub fn read_config(model_dir: &Path) -> Result<ModelConfig, ConfigError> {
    let file = model_dir.join(CONFIG_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::at(&file, e))?;
    parse_text(&file, &text)
}
