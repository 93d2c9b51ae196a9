//! A configuration file's text, read as supervisor.toml and supervisord's INI files are.

use std::path::Path;

/// A configuration file's text; or why not, with the line (0 when it could not be read at
/// all): a file that is not UTF-8 is named with the line and column of its first bad byte.
pub fn read_text(path: &Path) -> Result<String, (usize, String)> {
    let bytes =
        std::fs::read(path).map_err(|e| (0, format!("cannot read the configuration: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line_start = bytes[..good]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let line = bytes[..good].iter().filter(|&&b| b == b'\n').count() + 1;
        let column = good - line_start + 1;
        let bad = bytes.get(good).copied().unwrap_or_default();
        (
            line,
            format!("not UTF-8: byte 0x{bad:02x} at column {column} (save the file as UTF-8)"),
        )
    })
}
