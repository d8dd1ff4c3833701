//! What is left of a body as it is read, by its framing: a length, chunks (decoded by
//! [`crate::h1::chunked::Decoder`], no buffer held), or the connection's close. One type for
//! the client's body ([`super::body`]) and the shard's answer ([`super::relay`]).

use crate::h1::chunked::{encode_chunk, ChunkError, Decoder, Step};
use crate::h1::Framing;

/// What is left of a body.
#[derive(Debug)]
pub enum Left {
    Length(u64),
    Chunked(Decoder),
    UntilClose,
    Done,
}

impl Left {
    /// A body framed by `framing`; a chunked one decodes at most `max_body` bytes and
    /// `max_trailer` bytes of trailers.
    pub fn new(framing: Framing, max_body: u64, max_trailer: usize) -> Left {
        match framing {
            Framing::Empty | Framing::Length(0) => Left::Done,
            Framing::Length(n) => Left::Length(n),
            Framing::Chunked => Left::Chunked(Decoder::new(max_body, max_trailer)),
            Framing::UntilClose => Left::UntilClose,
        }
    }

    pub fn is_done(&self) -> bool {
        matches!(self, Left::Done)
    }

    /// Takes the body's bytes from the start of `input` into `out` (as one chunk each when
    /// `encode`); returns how many bytes of `input` were the body's (the rest follows it).
    pub fn take(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        encode: bool,
    ) -> Result<usize, ChunkError> {
        let put = |data: &[u8], out: &mut Vec<u8>| {
            if encode {
                encode_chunk(data, out)
            } else {
                out.extend_from_slice(data)
            }
        };
        match self {
            Left::Done => Ok(0),
            Left::UntilClose => {
                put(input, out);
                Ok(input.len())
            }
            Left::Length(n) => {
                let used = (*n).min(input.len() as u64) as usize;
                put(&input[..used], out);
                *n -= used as u64;
                if *n == 0 {
                    *self = Left::Done;
                }
                Ok(used)
            }
            Left::Chunked(decoder) => {
                let mut used = 0;
                while used < input.len() {
                    let (n, step) = decoder.decode(&input[used..])?;
                    used += n;
                    match step {
                        Step::Data(data) => put(data, out),
                        Step::NeedMore => break,
                        Step::Done => {
                            *self = Left::Done;
                            break;
                        }
                    }
                }
                Ok(used)
            }
        }
    }
}
