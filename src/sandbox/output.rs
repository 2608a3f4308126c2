//! Capture of one output stream of a sandbox: keeps at most `cap` bytes, counts the rest,
//! and finds the runner's end-of-stream marker even when it is split across chunks.
//! Pure and bounded: whatever the code prints, memory stays under `cap` plus a marker.

use crate::sandbox::protocol::MAX_RESULT_BYTES;

/// What one pushed chunk produced.
#[derive(Debug, Default, PartialEq)]
pub struct Pushed {
    /// Bytes of the code's output that are new and within the cap (to stream to a client).
    pub visible: Vec<u8>,
    /// True once the marker (and, for a result marker, its whole line) has been seen.
    pub finished: bool,
}

/// One captured stream (stdout or stderr).
#[derive(Debug)]
pub struct StreamCapture {
    cap: usize,
    marker: Vec<u8>,
    /// Whether a line (up to `\n`) follows the marker and must be collected.
    marker_has_payload: bool,
    kept: Vec<u8>,
    dropped: u64,
    /// Bytes that may be the start of the marker, held back until the next chunk.
    pending: Vec<u8>,
    marker_seen: bool,
    payload: Vec<u8>,
    payload_overflow: bool,
    finished: bool,
}

impl StreamCapture {
    /// A capture that ends at `marker` (no payload), like stderr's end marker.
    pub fn ending_at(cap: usize, marker: Vec<u8>) -> Self {
        Self::new(cap, marker, false)
    }

    /// A capture that ends at `marker` followed by one line of payload, like stdout's result.
    pub fn ending_at_line(cap: usize, marker: Vec<u8>) -> Self {
        Self::new(cap, marker, true)
    }

    fn new(cap: usize, marker: Vec<u8>, marker_has_payload: bool) -> Self {
        Self {
            cap,
            marker,
            marker_has_payload,
            kept: Vec::new(),
            dropped: 0,
            pending: Vec::new(),
            marker_seen: false,
            payload: Vec::new(),
            payload_overflow: false,
            finished: false,
        }
    }

    /// Feeds one chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) -> Pushed {
        let mut out = Pushed::default();
        if self.finished {
            return Pushed {
                visible: Vec::new(),
                finished: true,
            };
        }
        if self.marker_seen {
            self.take_payload(chunk);
            out.finished = self.finished;
            return out;
        }
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(chunk);
        if let Some(pos) = memchr::memmem::find(&data, &self.marker) {
            out.visible = self.commit(&data[..pos]);
            self.marker_seen = true;
            if self.marker_has_payload {
                self.take_payload(&data[pos + self.marker.len()..]);
            } else {
                self.finished = true;
            }
            out.finished = self.finished;
            return out;
        }
        let hold = longest_suffix_prefix(&data, &self.marker);
        let split = data.len() - hold;
        out.visible = self.commit(&data[..split]);
        self.pending = data[split..].to_vec();
        out
    }

    /// Ends the stream without a marker: held-back bytes become output.
    pub fn close(&mut self) -> Vec<u8> {
        let pending = std::mem::take(&mut self.pending);
        if self.marker_seen {
            return Vec::new();
        }
        self.commit(&pending)
    }

    fn take_payload(&mut self, data: &[u8]) {
        let (line, done) = match memchr::memchr(b'\n', data) {
            Some(nl) => (&data[..nl], true),
            None => (data, false),
        };
        if self.payload.len() + line.len() > MAX_RESULT_BYTES {
            self.payload_overflow = true;
        } else {
            self.payload.extend_from_slice(line);
        }
        self.finished = done;
    }

    fn commit(&mut self, data: &[u8]) -> Vec<u8> {
        let room = self.cap.saturating_sub(self.kept.len());
        let take = room.min(data.len());
        self.kept.extend_from_slice(&data[..take]);
        self.dropped += (data.len() - take) as u64;
        data[..take].to_vec()
    }

    /// True once the marker (and its payload line) has been read.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The payload line after the marker, if it was read whole and within bounds.
    pub fn payload(&self) -> Option<&[u8]> {
        (self.finished && self.marker_has_payload && !self.payload_overflow)
            .then_some(&self.payload[..])
    }

    /// True when output past the cap was dropped.
    pub fn truncated(&self) -> bool {
        self.dropped > 0
    }

    /// The kept output as text, with a visible marker when output was dropped.
    pub fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.kept).into_owned();
        if self.dropped > 0 {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[output truncated: {} more bytes were dropped after the first {} bytes]",
                self.dropped, self.cap
            ));
        }
        text
    }
}

/// Length of the longest suffix of `data` that is a proper prefix of `marker`.
fn longest_suffix_prefix(data: &[u8], marker: &[u8]) -> usize {
    let max = marker.len().saturating_sub(1).min(data.len());
    (1..=max)
        .rev()
        .find(|&k| data.ends_with(&marker[..k]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8] = b"\x1e\x1eEND:abc:";

    fn collect(cap: usize, chunks: &[&[u8]]) -> (StreamCapture, Vec<u8>) {
        let mut c = StreamCapture::ending_at_line(cap, M.to_vec());
        let mut streamed = Vec::new();
        for ch in chunks {
            streamed.extend(c.push(ch).visible);
        }
        streamed.extend(c.close());
        (c, streamed)
    }

    #[test]
    fn plain_output_passes_through() {
        let (c, streamed) = collect(100, &[b"hello ", b"world\n"]);
        assert_eq!(c.text(), "hello world\n");
        assert_eq!(streamed, b"hello world\n");
        assert!(!c.truncated());
        assert!(!c.finished());
    }

    #[test]
    fn marker_split_across_every_boundary_is_found() {
        let full = [b"out".as_slice(), M, b"{\"ok\":1}\ntrailing"].concat();
        for i in 0..full.len() {
            for j in i..full.len() {
                let (c, streamed) = collect(100, &[&full[..i], &full[i..j], &full[j..]]);
                assert_eq!(c.text(), "out", "split {i},{j}");
                assert_eq!(streamed, b"out");
                assert!(c.finished(), "split {i},{j}");
                assert_eq!(c.payload(), Some(&b"{\"ok\":1}"[..]));
            }
        }
    }

    #[test]
    fn partial_marker_lookalike_is_released_as_output() {
        let (c, _) = collect(100, &[b"a\x1e\x1eEN", b"D:x not it"]);
        assert_eq!(c.text(), "a\x1e\x1eEND:x not it");
        assert!(!c.finished());
    }

    #[test]
    fn held_back_prefix_at_end_of_stream_is_kept() {
        let (c, _) = collect(100, &[b"tail\x1e\x1e"]);
        assert_eq!(c.text(), "tail\x1e\x1e");
    }

    #[test]
    fn output_over_the_cap_is_dropped_and_counted() {
        let big = vec![b'x'; 10_000];
        let (c, streamed) = collect(1024, &[&big, &big]);
        assert_eq!(
            streamed.len(),
            1024,
            "nothing past the cap is streamed either"
        );
        assert!(c.truncated());
        let t = c.text();
        assert!(t.starts_with(&"x".repeat(1024)));
        assert!(
            t.contains("18976 more bytes were dropped after the first 1024 bytes"),
            "{t}"
        );
    }

    #[test]
    fn marker_is_found_after_truncation() {
        let big = vec![b'y'; 5000];
        let (c, _) = collect(100, &[&big, M, b"{}\n"]);
        assert!(c.truncated());
        assert!(c.finished());
        assert_eq!(c.payload(), Some(&b"{}"[..]));
    }

    #[test]
    fn payload_without_newline_is_not_finished() {
        let (c, _) = collect(100, &[M, b"{\"partial\""]);
        assert!(!c.finished());
        assert_eq!(c.payload(), None);
    }

    #[test]
    fn oversized_payload_is_refused() {
        let huge = vec![b'a'; MAX_RESULT_BYTES + 10];
        let (c, _) = collect(100, &[M, &huge, b"\n"]);
        assert!(c.finished());
        assert_eq!(c.payload(), None);
    }

    #[test]
    fn end_marker_without_payload_finishes_at_once() {
        let mut c = StreamCapture::ending_at(100, b"\x1e\x1eCE-END:n\n".to_vec());
        let p = c.push(b"warning\n\x1e\x1eCE-END:n\nignored");
        assert!(p.finished);
        assert_eq!(p.visible, b"warning\n");
        assert_eq!(c.text(), "warning\n");
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let (c, _) = collect(100, &[b"\xff\xfeok"]);
        assert!(c.text().ends_with("ok"));
    }
}
