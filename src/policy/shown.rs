//! Untrusted text made safe to put in a message or a log line.

/// `'x'` for printable ASCII, else `U+XXXX`, so no raw control or look-alike reaches a log.
pub(crate) fn show_char(ch: char) -> String {
    if ch.is_ascii_graphic() {
        format!("'{ch}'")
    } else {
        format!("U+{:04X}", u32::from(ch))
    }
}

/// `text` escaped (`\n`, `\u{430}`, `\"`) and cut to `max` characters, `...` marking a cut.
pub(crate) fn escaped_cut(text: &str, max: usize) -> String {
    let mut escaped = text.escape_default();
    let mut out: String = escaped.by_ref().take(max).collect();
    if escaped.next().is_some() {
        out.push_str("...");
    }
    out
}
