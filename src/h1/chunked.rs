//! The chunked transfer coding (RFC 9112 §7.1), incrementally: [`Decoder`] takes whatever
//! bytes have arrived and yields the body's data as slices of them, holding only a few
//! integers between calls (no buffer). Strict where framing is decided: the chunk size is 1 to
//! 16 hex digits (no sign, no `0x`, overflow refused), every line ends in CRLF (a bare LF or CR
//! is refused), and the data of each chunk must be followed by CRLF. Chunk extensions are
//! allowed and skipped (bounded); the trailer section is read, bounded, and dropped. The body's
//! total is bounded. kansas forwards a chunked body re-chunked with [`encode_chunk`] and
//! [`LAST_CHUNK`]: clean sizes, no extensions, no trailers.

/// The end of a chunked body as kansas writes it (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Longest chunk-size line beyond its digits (extensions and whitespace).
const MAX_EXTENSION_BYTES: usize = 4_096;

/// Writes `data` as one chunk (nothing for empty data, which would end the body).
pub fn encode_chunk(data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Where the decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the size's hex digits (how many so far).
    Size(u8),
    /// Whitespace after the size, before `;` or CR.
    SizeSpace,
    /// In a chunk extension (bytes so far).
    Extension(usize),
    /// After the size line's CR.
    SizeLf,
    /// In a chunk's data.
    Data,
    /// After a chunk's data: CR, then LF.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// In a trailer field line.
    Trailer,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final CR.
    EndLf,
    Done,
}

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// Malformed framing (what was wrong).
    Syntax(&'static str),
    /// The decoded body exceeds the limit.
    TooLarge,
}

/// What one call of [`Decoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Body data.
    Data(&'a [u8]),
    /// The input was used up without data or the end (call again with more bytes).
    NeedMore,
    /// The body and its trailers are complete.
    Done,
}

/// An incremental chunked-body decoder.
#[derive(Debug, Clone)]
pub struct Decoder {
    state: State,
    /// The chunk size being read, then what is left of the chunk's data.
    remaining: u64,
    /// Decoded bytes so far, and the limit.
    total: u64,
    max_body: u64,
    /// Trailer bytes so far, and the limit.
    trailer: usize,
    max_trailer: usize,
    /// Whether the current trailer line has had its colon (a field line needs one).
    trailer_colon: bool,
}

impl Decoder {
    pub fn new(max_body: u64, max_trailer: usize) -> Decoder {
        Decoder {
            state: State::Size(0),
            remaining: 0,
            total: 0,
            max_body,
            max_trailer,
            trailer: 0,
            trailer_colon: false,
        }
    }

    /// Whether the whole body has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the start of `input`: returns how many bytes were used and what they
    /// held. Data is returned as soon as any is available; call again with the rest.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<(usize, Step<'a>), ChunkError> {
        let mut used = 0;
        while used < input.len() {
            if self.state == State::Done {
                return Ok((used, Step::Done));
            }
            if self.state == State::Data {
                let n =
                    (input.len() - used).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                let data = &input[used..used + n];
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = State::DataCr;
                }
                return Ok((used + n, Step::Data(data)));
            }
            self.byte(input[used])?;
            used += 1;
        }
        let step = if self.state == State::Done {
            Step::Done
        } else {
            Step::NeedMore
        };
        Ok((used, step))
    }

    /// One framing byte.
    fn byte(&mut self, b: u8) -> Result<(), ChunkError> {
        use State::*;
        let bad = |what| Err(ChunkError::Syntax(what));
        self.state = match (self.state, b) {
            (Size(n), _) if b.is_ascii_hexdigit() => {
                if n >= 16 {
                    return bad("chunk size over 64 bits");
                }
                let digit = (b as char).to_digit(16).unwrap_or(0);
                self.remaining = (self.remaining << 4) | u64::from(digit);
                Size(n + 1)
            }
            (Size(0), _) => return bad("chunk size is not hex digits"),
            (Size(_) | SizeSpace, b' ' | b'\t') => SizeSpace,
            (Size(_) | SizeSpace, b';') => Extension(0),
            (Size(_) | SizeSpace, b'\r') => SizeLf,
            (Size(_) | SizeSpace, _) => return bad("invalid byte after the chunk size"),
            (Extension(_), b'\r') => SizeLf,
            (Extension(n), _) if n >= MAX_EXTENSION_BYTES => {
                return bad("chunk extension too long")
            }
            (Extension(n), b'\t' | 0x20..=0x7e | 0x80..=0xff) => Extension(n + 1),
            (Extension(_), _) => return bad("control byte in a chunk extension"),
            (SizeLf, b'\n') => self.chunk_start()?,
            (SizeLf, _) => return bad("chunk size line not ended by CRLF"),
            (DataCr, b'\r') => DataLf,
            (DataCr, _) => return bad("chunk data not followed by CRLF"),
            (DataLf, b'\n') => Size(0),
            (DataLf, _) => return bad("chunk data not followed by CRLF"),
            (TrailerStart, b'\r') => EndLf,
            (TrailerStart | Trailer, _) => self.trailer_byte(b)?,
            (TrailerLf, b'\n') if self.trailer_colon => TrailerStart,
            (TrailerLf, b'\n') => return bad("trailer line without a colon"),
            (TrailerLf, _) => return bad("trailer line not ended by CRLF"),
            (EndLf, b'\n') => Done,
            (EndLf, _) => return bad("chunked body not ended by CRLF"),
            (Data | Done, _) => self.state,
        };
        Ok(())
    }

    /// After a size line: the data of a chunk, or the trailers after the last chunk.
    fn chunk_start(&mut self) -> Result<State, ChunkError> {
        if self.remaining == 0 {
            return Ok(State::TrailerStart);
        }
        self.total = self
            .total
            .checked_add(self.remaining)
            .filter(|&t| t <= self.max_body)
            .ok_or(ChunkError::TooLarge)?;
        Ok(State::Data)
    }

    /// A byte of a trailer field line (read, bounded, dropped).
    fn trailer_byte(&mut self, b: u8) -> Result<State, ChunkError> {
        self.trailer += 1;
        if self.trailer > self.max_trailer {
            return Err(ChunkError::Syntax("trailer section too long"));
        }
        if self.state == State::TrailerStart {
            self.trailer_colon = false;
            if !is_token(b) {
                return Err(ChunkError::Syntax("invalid trailer field name"));
            }
        }
        match b {
            b'\r' => Ok(State::TrailerLf),
            b':' => {
                self.trailer_colon = true;
                Ok(State::Trailer)
            }
            b'\t' | 0x20..=0x7e | 0x80..=0xff if self.trailer_colon || is_token(b) => {
                Ok(State::Trailer)
            }
            _ => Err(ChunkError::Syntax("invalid byte in a trailer field")),
        }
    }
}

/// A `tchar` (RFC 9110 §5.6.2).
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes; returns the body or the error.
    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut d = Decoder::new(1 << 20, 1024);
        let mut body = Vec::new();
        let mut at = 0;
        while at < input.len() && !d.is_done() {
            let end = (at + step).min(input.len());
            let (used, got) = d.decode(&input[at..end])?;
            at += used;
            if let Step::Data(data) = got {
                body.extend_from_slice(data);
            }
        }
        Ok((body, d.is_done()))
    }

    #[test]
    fn decodes_in_any_pieces() {
        let input = b"4;ext=\"a b\"\r\nWiki\r\n5 \r\npedia\r\n0\r\nX-T: 1\r\n\r\n";
        for step in 1..input.len() {
            assert_eq!(
                decode_all(input, step),
                Ok((b"Wikipedia".to_vec(), true)),
                "{step}"
            );
        }
    }

    #[test]
    fn refuses_bad_framing() {
        for bad in [
            &b"x\r\n"[..],
            b"-1\r\n",
            b"0x5\r\n",
            b"4\nWiki\r\n",
            b"4\r\nWikiX",
            b"11111111111111111\r\n",
            b"0\r\nno colon\r\n\r\n",
            b"0\r\n\r\r",
        ] {
            assert!(
                matches!(decode_all(bad, 100), Err(ChunkError::Syntax(_))),
                "{bad:?}"
            );
        }
        let mut d = Decoder::new(3, 1024);
        assert_eq!(d.decode(b"4\r\n"), Err(ChunkError::TooLarge));
    }
}
