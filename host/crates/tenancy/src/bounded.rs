//! Reading the files the operator names, bounded.

use std::path::Path;

/// The text of `file`, refused past `limit` bytes without reading more
/// (the files the tenants file names are read again on every change).
pub(crate) fn read_bounded(file: &Path, limit: u64) -> Result<String, String> {
    use std::io::Read;
    let error = |e: std::io::Error| format!("cannot read {}: {e}", file.display());
    let mut text = String::new();
    std::fs::File::open(file)
        .map_err(error)?
        .take(limit + 1)
        .read_to_string(&mut text)
        .map_err(error)?;
    if text.len() as u64 > limit {
        return Err(format!("{} is larger than {limit} bytes", file.display()));
    }
    Ok(text)
}
