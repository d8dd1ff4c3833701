//! Frames on the control socket. A frame is one or more pieces, each a big-endian `u32` length
//! prefix and that many bytes; bit 31 of the prefix ([`MORE`]) says another piece of the same
//! frame follows. Frames of up to [`CHUNK`] bytes are one piece with bit 31 clear: byte for byte
//! the format before chunking (a kansas that predates it reads them). Larger frames (the state of
//! a big queue map) are cut into [`CHUNK`]-byte pieces, so no frame is too large for the wire;
//! a frame above [`MAX_TOTAL`] in all is refused by the writer before a byte is written and
//! skipped whole by the reader (the stream stays in step). The reader grows its buffer as bytes
//! arrive, never from a declared length.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bit 31 of a piece's length prefix: more pieces of this frame follow.
const MORE: u32 = 1 << 31;
/// The piece size the writer uses: frames up to this size are a single piece.
pub const CHUNK: usize = 16 << 20;
/// The largest piece read (the largest frame before chunking; anything above is garbage and the
/// stream cannot be trusted any more).
const MAX_PIECE: u32 = 1 << 30;
/// The largest frame, all pieces together: 16 GiB. The queue map at its configured largest
/// (`queues.max_entries` = 100,000,000 Zulip queue ids, about 85 bytes each encoded) fits.
pub const MAX_TOTAL: u64 = 16 << 30;

/// What went wrong reading or writing a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed (the peer is gone): nothing more can be read or written.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended inside a frame.
    #[error("the control stream ended inside a frame")]
    Truncated,
    /// A piece longer than any writer sends: the stream is out of step.
    #[error(
        "a piece of {0} bytes, above the {MAX_PIECE}-byte limit: the control stream is garbled"
    )]
    Garbled(u32),
    /// The frame, all pieces together, is above [`MAX_TOTAL`] (read: skipped whole).
    #[error("a frame of {0} bytes or more, above the {MAX_TOTAL}-byte limit")]
    TooLarge(u64),
    /// The message could not be encoded (nothing was written).
    #[error("cannot encode the message: {0}")]
    Encode(String),
    /// The frame was read whole but is no message we know.
    #[error("undecodable message: {0}")]
    Undecodable(String),
}

impl FrameError {
    /// Whether the stream is still in step after this error (the frame was skipped whole, or
    /// nothing was written), so the next frame can be read or written.
    pub fn in_step(&self) -> bool {
        matches!(
            self,
            FrameError::TooLarge(_) | FrameError::Encode(_) | FrameError::Undecodable(_)
        )
    }
}

/// Writes one message as one frame.
pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<usize, FrameError> {
    let bytes = bincode::serialize(msg).map_err(|e| FrameError::Encode(e.to_string()))?;
    write_raw_frame(w, &bytes).await
}

/// Writes one frame of already encoded bytes in pieces of [`chunk_size`]; the number of pieces.
pub async fn write_raw_frame<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    bytes: &[u8],
) -> Result<usize, FrameError> {
    write_pieces(w, bytes, chunk_size()).await
}

/// Writes one frame in pieces of at most `chunk` bytes (1..=1 GiB); the number of pieces.
pub async fn write_pieces<W: AsyncWriteExt + Unpin>(
    w: &mut W,
    bytes: &[u8],
    chunk: usize,
) -> Result<usize, FrameError> {
    if bytes.len() as u64 > MAX_TOTAL {
        return Err(FrameError::TooLarge(bytes.len() as u64));
    }
    let chunk = chunk.clamp(1, MAX_PIECE as usize);
    let mut pieces = 0;
    let mut rest = bytes;
    loop {
        let n = rest.len().min(chunk);
        let more = if n < rest.len() { MORE } else { 0 };
        w.write_u32(n as u32 | more).await?;
        w.write_all(&rest[..n]).await?;
        rest = &rest[n..];
        pieces += 1;
        if more == 0 {
            break;
        }
    }
    w.flush().await?;
    Ok(pieces)
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncReadExt + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<Option<T>, FrameError> {
    match read_raw_frame(r).await? {
        None => Ok(None),
        Some(buf) => bincode::deserialize(&buf)
            .map(Some)
            .map_err(|e| FrameError::Undecodable(e.to_string())),
    }
}

/// Reads one frame's bytes; `Ok(None)` at a clean end of stream.
pub async fn read_raw_frame<R: AsyncReadExt + Unpin>(
    r: &mut R,
) -> Result<Option<Vec<u8>>, FrameError> {
    read_capped(r, MAX_TOTAL).await
}

/// [`read_raw_frame`] with a total cap of `cap` bytes.
async fn read_capped<R: AsyncReadExt + Unpin>(
    r: &mut R,
    cap: u64,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut buf = Vec::new();
    let mut total: u64 = 0;
    let mut first = true;
    loop {
        let prefix = match read_prefix(r).await? {
            Some(p) => p,
            None if first => return Ok(None),
            None => return Err(FrameError::Truncated),
        };
        first = false;
        let len = prefix & !MORE;
        if len > MAX_PIECE {
            return Err(FrameError::Garbled(len));
        }
        total += u64::from(len);
        if total > cap {
            // Skip the rest of the frame, so the next one is read from its start.
            skip(r, len, prefix & MORE != 0).await?;
            return Err(FrameError::TooLarge(total));
        }
        let got = (&mut *r).take(u64::from(len)).read_to_end(&mut buf).await?;
        if got < len as usize {
            return Err(FrameError::Truncated);
        }
        if prefix & MORE == 0 {
            return Ok(Some(buf));
        }
    }
}

/// Reads a piece's length prefix; `None` at the end of the stream, an error inside a prefix.
async fn read_prefix<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Option<u32>, FrameError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut prefix[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(FrameError::Truncated),
            n => got += n,
        }
    }
    Ok(Some(u32::from_be_bytes(prefix)))
}

/// Reads and drops `len` bytes and, when `more`, every further piece of the frame.
async fn skip<R: AsyncReadExt + Unpin>(
    r: &mut R,
    mut len: u32,
    mut more: bool,
) -> Result<(), FrameError> {
    loop {
        let n =
            tokio::io::copy(&mut (&mut *r).take(u64::from(len)), &mut tokio::io::sink()).await?;
        if n < u64::from(len) {
            return Err(FrameError::Truncated);
        }
        if !more {
            return Ok(());
        }
        let prefix = read_prefix(r).await?.ok_or(FrameError::Truncated)?;
        len = prefix & !MORE;
        more = prefix & MORE != 0;
        if len > MAX_PIECE {
            return Err(FrameError::Garbled(len));
        }
    }
}

/// The piece size to write: [`CHUNK`], or 16 bytes when the test switch says `tiny-chunks`
/// (so a small real state crosses many pieces).
fn chunk_size() -> usize {
    if super::test_switch("tiny-chunks") {
        16
    } else {
        CHUNK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn round_trip(len: usize, chunk: usize) -> (usize, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        let pieces = write_pieces(&mut wire, &bytes, chunk).await.unwrap();
        let back = read_raw_frame(&mut wire.as_slice()).await.unwrap().unwrap();
        assert_eq!(back, bytes, "len {len} chunk {chunk}");
        (pieces, wire)
    }

    #[tokio::test]
    async fn frames_round_trip_across_piece_boundaries() {
        for (len, chunk, pieces) in [
            (0, 16, 1),
            (15, 16, 1),
            (16, 16, 1),
            (17, 16, 2),
            (32, 16, 2),
            (33, 16, 3),
            (1000, 7, 143),
        ] {
            assert_eq!(round_trip(len, chunk).await.0, pieces, "len {len}");
        }
    }

    #[tokio::test]
    async fn a_frame_below_the_chunk_size_is_the_format_before_chunking() {
        let (_, wire) = round_trip(300, CHUNK).await;
        assert_eq!(wire[..4], 300u32.to_be_bytes());
        assert_eq!(wire.len(), 304);
        // And a chunked one sets bit 31 on every piece but the last.
        let (_, wire) = round_trip(40, 16).await;
        assert_eq!(wire[..4], (16 | MORE).to_be_bytes());
        assert_eq!(wire[20..24], (16 | MORE).to_be_bytes());
        assert_eq!(wire[40..44], 8u32.to_be_bytes());
    }

    #[tokio::test]
    async fn a_truncated_stream_is_an_error_not_a_frame() {
        let (_, wire) = round_trip(100, 16).await;
        for cut in [2, 4, 10, 20, 21, wire.len() - 1] {
            let err = read_raw_frame(&mut &wire[..cut]).await.unwrap_err();
            assert!(matches!(err, FrameError::Truncated), "cut {cut}: {err}");
            assert!(!err.in_step());
        }
        assert!(read_raw_frame(&mut &wire[..0]).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_frame_above_the_total_cap_is_skipped_whole() {
        let mut wire = Vec::new();
        write_pieces(&mut wire, &[7u8; 100], 16).await.unwrap();
        write_pieces(&mut wire, b"next", 16).await.unwrap();
        let mut r = wire.as_slice();
        let err = read_capped(&mut r, 50).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge(64)), "{err}");
        assert!(err.in_step());
        assert_eq!(read_capped(&mut r, 50).await.unwrap().unwrap(), b"next");
        assert!(read_capped(&mut r, 50).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_stream_cut_inside_a_declared_length_is_truncated() {
        // A prefix claiming a whole GiB with five bytes behind it: the read fails on the missing
        // bytes without having reserved the GiB.
        let mut wire = MAX_PIECE.to_be_bytes().to_vec();
        wire.extend_from_slice(b"short");
        let err = read_raw_frame(&mut wire.as_slice()).await.unwrap_err();
        assert!(matches!(err, FrameError::Truncated), "{err}");
        let garbled = (MAX_PIECE + 1).to_be_bytes();
        let err = read_raw_frame(&mut garbled.as_slice()).await.unwrap_err();
        assert!(matches!(err, FrameError::Garbled(_)), "{err}");
    }

    #[tokio::test]
    async fn an_undecodable_frame_is_skipped_and_the_next_one_read() {
        let mut wire = Vec::new();
        write_pieces(&mut wire, &[0xff; 40], 16).await.unwrap();
        write_frame(&mut wire, &super::super::ToWorker::Stop)
            .await
            .unwrap();
        let mut r = wire.as_slice();
        let err = read_frame::<_, super::super::ToWorker>(&mut r)
            .await
            .unwrap_err();
        assert!(err.in_step(), "{err}");
        assert!(matches!(
            read_frame(&mut r).await.unwrap(),
            Some(super::super::ToWorker::Stop)
        ));
    }
}
