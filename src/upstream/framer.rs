//! Frames IMAP responses from the upstream: a response is a line, plus a
//! literal and another line for every `{n}` announced at a line's end.
//! Works on whole buffers with memchr-style scans and one copy per read, so
//! a multi-megabyte BODY[] costs a memcpy, not a per-byte state machine.

use std::ops::Range;

#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

pub struct Framer {
    buf: Vec<u8>,
    /// Start of the current (incomplete) message.
    start: usize,
    /// Where scanning resumes: the start of a line not yet complete.
    pos: usize,
    max: usize,
}

/// The literal length announced at the end of a line (`{12}` or `{12+}`).
fn announced(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl Framer {
    pub fn new(max: usize) -> Self {
        Framer {
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
            pos: 0,
            max,
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && (self.start >= self.buf.len() / 2 || self.start > (1 << 20)) {
            self.buf.drain(..self.start);
            self.pos -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete message, if one is buffered.
    pub fn next_message(&mut self) -> Result<Option<Range<usize>>, TooLarge> {
        loop {
            let Some(nl) = self.buf[self.pos..].iter().position(|&b| b == b'\n') else {
                return self.check_size();
            };
            let line_end = self.pos + nl + 1;
            match announced(&self.buf[self.pos..line_end]) {
                None => {
                    let range = self.start..line_end;
                    self.start = line_end;
                    self.pos = line_end;
                    return Ok(Some(range));
                }
                Some(n) => {
                    if line_end - self.start + n > self.max {
                        return Err(TooLarge);
                    }
                    if self.buf.len() < line_end + n {
                        return Ok(None);
                    }
                    self.pos = line_end + n;
                }
            }
        }
    }

    fn check_size(&self) -> Result<Option<Range<usize>>, TooLarge> {
        if self.buf.len() - self.start > self.max {
            Err(TooLarge)
        } else {
            Ok(None)
        }
    }

    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut f = Framer::new(1 << 20);
        let mut out = Vec::new();
        for chunk in input {
            f.push(chunk);
            while let Some(r) = f.next_message().unwrap() {
                out.push(f.bytes(r).to_vec());
            }
        }
        out
    }

    #[test]
    fn lines_and_literals_in_any_chunking() {
        let whole: &[u8] = b"* 1 FETCH (BODY[] {5}\r\na\r\nb} UID 3)\r\nA1 OK done\r\n";
        let expect = vec![
            b"* 1 FETCH (BODY[] {5}\r\na\r\nb} UID 3)\r\n".to_vec(),
            b"A1 OK done\r\n".to_vec(),
        ];
        assert_eq!(frames(&[whole]), expect);
        for split in 1..whole.len() {
            assert_eq!(
                frames(&[&whole[..split], &whole[split..]]),
                expect,
                "split at {split}"
            );
        }
    }

    #[test]
    fn non_sync_and_empty_literals() {
        assert_eq!(
            frames(&[b"* X {0+}\r\n\r\n"]),
            vec![b"* X {0+}\r\n\r\n".to_vec()]
        );
    }

    #[test]
    fn oversized_literals_are_refused() {
        let mut f = Framer::new(100);
        f.push(b"* 1 FETCH (BODY[] {1000}\r\n");
        assert_eq!(f.next_message(), Err(TooLarge));
    }
}
