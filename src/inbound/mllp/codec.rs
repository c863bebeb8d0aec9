//! The MLLP framing (HL7 v2 Minimal Lower Layer Protocol, release 2): a message is sent as
//! `0x0B` + payload + `0x1C 0x0D`.
//!
//! [`MllpCodec`] is a tokio-util `Decoder`/`Encoder`. The decoder takes whatever TCP hands it:
//! several frames in one read, a frame split over many reads, and bytes outside any frame
//! (line noise, a keep-alive, a sender's stray newline), which are skipped and counted. A
//! frame that grows past `max_frame` is a [`FrameError::TooLarge`]: the connection answers
//! `AR` and closes, since where the next frame starts can no longer be trusted.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// Start block.
pub const START: u8 = 0x0B;
/// End block, followed by [`CR`].
pub const END: u8 = 0x1C;
pub const CR: u8 = 0x0D;

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The payload between the start and end blocks.
    pub payload: Bytes,
    /// Bytes skipped before this frame's start block (garbage between frames).
    pub skipped: usize,
}

/// Why the stream cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Occurs when a frame's payload exceeds the configured cap before its end block.
    ///
    /// ### Handling
    /// The connection answers `AR` against `head` (the frame's first bytes, where MSH is) and
    /// closes.
    #[error("frame larger than {max} bytes")]
    TooLarge { max: usize, head: Bytes },
    /// Occurs when the socket fails.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How much of an oversized frame is kept to address its `AR` (MSH fits easily).
const HEAD_BYTES: usize = 4_096;

/// The MLLP codec; `max_frame` caps a payload.
#[derive(Debug)]
pub struct MllpCodec {
    max_frame: usize,
    /// Bytes of the current frame already searched for the end block (after its start block),
    /// so a frame arriving in many reads is scanned once, not once per read.
    scanned: usize,
    /// Garbage skipped since the last frame.
    skipped: usize,
    /// Inside a frame (its start block is `buf[0]`).
    in_frame: bool,
}

impl MllpCodec {
    pub fn new(max_frame: usize) -> Self {
        Self {
            max_frame,
            scanned: 0,
            skipped: 0,
            in_frame: false,
        }
    }
}

impl Decoder for MllpCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if !self.in_frame {
                match buf.iter().position(|&b| b == START) {
                    Some(at) => {
                        self.skipped += at;
                        buf.advance(at);
                        self.in_frame = true;
                        self.scanned = 0;
                    }
                    None => {
                        self.skipped += buf.len();
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            // buf[0] is the start block; the payload begins at 1.
            let body = &buf[1..];
            let mut found = None;
            let mut restart = None;
            let from = self.scanned;
            for (offset, &byte) in body.iter().enumerate().skip(from) {
                match byte {
                    END if body.get(offset + 1) == Some(&CR) => {
                        found = Some(offset);
                        break;
                    }
                    END if offset + 1 == body.len() => {
                        // Its CR may be in the next read: look at this byte again then.
                        self.scanned = offset;
                        break;
                    }
                    // A new start block inside a frame: the frame before it was cut off.
                    START => {
                        restart = Some(offset);
                        break;
                    }
                    _ => {}
                }
                self.scanned = offset + 1;
            }
            if let Some(offset) = restart {
                // The cut-off frame passed the cap before the new start block: refused, as it
                // is when the start block arrives in a later read (the answer must not depend
                // on how TCP split the bytes; found by fuzzing, fuzz/regressions/mllp_codec).
                if offset > self.max_frame {
                    return Err(self.too_large(buf));
                }
                self.skipped += offset + 1;
                buf.advance(offset + 1);
                self.in_frame = false;
                continue;
            }
            if let Some(length) = found {
                if length > self.max_frame {
                    return Err(self.too_large(buf));
                }
                buf.advance(1);
                let payload = buf.split_to(length).freeze();
                buf.advance(2);
                self.in_frame = false;
                self.scanned = 0;
                let skipped = std::mem::take(&mut self.skipped);
                return Ok(Some(Frame { payload, skipped }));
            }
            // `scanned` is the payload known so far: an end block waiting for its CR in the
            // next read is not counted, so a frame of exactly the cap split between its end
            // block and its CR is taken, as it is in one read.
            if self.scanned > self.max_frame {
                return Err(self.too_large(buf));
            }
            buf.reserve(1);
            return Ok(None);
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None => {
                // A frame cut off by the sender closing: nothing to acknowledge.
                if !buf.is_empty() {
                    tracing::debug!(bytes = buf.len(), "mllp stream ended inside a frame");
                }
                buf.clear();
                self.in_frame = false;
                Ok(None)
            }
        }
    }
}

impl MllpCodec {
    fn too_large(&mut self, buf: &mut BytesMut) -> FrameError {
        let head = Bytes::copy_from_slice(&buf[1..buf.len().min(HEAD_BYTES + 1)]);
        buf.clear();
        self.in_frame = false;
        self.scanned = 0;
        FrameError::TooLarge {
            max: self.max_frame,
            head,
        }
    }
}

impl Encoder<Bytes> for MllpCodec {
    type Error = std::io::Error;

    fn encode(&mut self, payload: Bytes, out: &mut BytesMut) -> Result<(), std::io::Error> {
        out.reserve(payload.len() + 3);
        out.put_u8(START);
        out.put_slice(&payload);
        out.put_u8(END);
        out.put_u8(CR);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &str) -> Vec<u8> {
        let mut out = vec![START];
        out.extend_from_slice(payload.as_bytes());
        out.extend_from_slice(&[END, CR]);
        out
    }

    fn drain(codec: &mut MllpCodec, buf: &mut BytesMut) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = codec.decode(buf).unwrap() {
            frames.push(frame);
        }
        frames
    }

    fn text(frame: &Frame) -> &str {
        std::str::from_utf8(&frame.payload).unwrap()
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::new();
        for payload in ["MSH|one", "MSH|two", "MSH|three"] {
            buf.extend_from_slice(&framed(payload));
        }
        let frames = drain(&mut codec, &mut buf);
        let payloads: Vec<&str> = frames.iter().map(text).collect();
        assert_eq!(payloads, vec!["MSH|one", "MSH|two", "MSH|three"]);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_frame_split_across_reads_at_every_byte() {
        let bytes = framed("MSH|^~\\&|split\rPID|1");
        for cut in 0..bytes.len() {
            let mut codec = MllpCodec::new(1024);
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert!(codec.decode(&mut buf).unwrap().is_none(), "cut at {cut}");
            buf.extend_from_slice(&bytes[cut..]);
            let frame = codec.decode(&mut buf).unwrap().unwrap();
            assert_eq!(text(&frame), "MSH|^~\\&|split\rPID|1", "cut at {cut}");
        }
        // One byte at a time.
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in &bytes {
            buf.extend_from_slice(&[*byte]);
            frames.extend(drain(&mut codec, &mut buf));
        }
        assert_eq!(frames.len(), 1);
    }

    #[test]
    fn garbage_between_frames_is_skipped_and_counted() {
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"\r\nnoise");
        buf.extend_from_slice(&framed("MSH|a"));
        buf.extend_from_slice(b"xx\x1c\r");
        buf.extend_from_slice(&framed("MSH|b"));
        let frames = drain(&mut codec, &mut buf);
        assert_eq!(frames.len(), 2);
        assert_eq!((text(&frames[0]), frames[0].skipped), ("MSH|a", 7));
        assert_eq!((text(&frames[1]), frames[1].skipped), ("MSH|b", 4));
    }

    #[test]
    fn a_start_block_inside_a_frame_drops_the_cut_off_frame() {
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::from(&b"\x0bMSH|cut off"[..]);
        buf.extend_from_slice(&framed("MSH|whole"));
        let frames = drain(&mut codec, &mut buf);
        assert_eq!(frames.len(), 1);
        assert_eq!(text(&frames[0]), "MSH|whole");
    }

    #[test]
    fn an_end_block_without_its_cr_is_payload() {
        let mut codec = MllpCodec::new(1024);
        let mut buf = BytesMut::from(&framed("MSH|a\x1cb")[..]);
        let frames = drain(&mut codec, &mut buf);
        assert_eq!(frames[0].payload.as_ref(), b"MSH|a\x1cb");
    }

    #[test]
    fn a_frame_over_the_cap_is_an_error_with_its_head_whether_or_not_it_ended() {
        let big = format!(
            "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|BIG1|P|2.5\r{}",
            "x".repeat(200)
        );
        let mut codec = MllpCodec::new(100);
        let mut buf = BytesMut::from(&framed(&big)[..]);
        match codec.decode(&mut buf) {
            Err(FrameError::TooLarge { max, head }) => {
                assert_eq!(max, 100);
                assert!(head.starts_with(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|BIG1"));
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        // Unfinished, arriving in pieces: refused once the cap is passed.
        let mut codec = MllpCodec::new(100);
        let mut buf = BytesMut::from(&b"\x0bMSH|"[..]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[b'y'; 96]);
        assert!(
            codec.decode(&mut buf).unwrap().is_none(),
            "exactly at the cap"
        );
        buf.extend_from_slice(b"z");
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge { .. })
        ));
        // A payload of exactly the cap is fine.
        let mut codec = MllpCodec::new(5);
        let mut buf = BytesMut::from(&framed("MSH|x")[..]);
        assert_eq!(text(&codec.decode(&mut buf).unwrap().unwrap()), "MSH|x");
    }

    /// Found by fuzzing (`mllp_codec`): a frame cut off by a new start block after it had
    /// passed the cap was skipped when the bytes came in one read and refused when they came
    /// in several. Now refused either way.
    #[test]
    fn a_cut_off_frame_over_the_cap_is_refused_however_the_bytes_arrive() {
        let mut bytes = vec![START];
        bytes.extend_from_slice(&[b'x'; 17]);
        bytes.extend_from_slice(&framed("MSH|next"));
        let mut whole = MllpCodec::new(16);
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(
            whole.decode(&mut buf),
            Err(FrameError::TooLarge { max: 16, .. })
        ));
        let mut split = MllpCodec::new(16);
        let mut buf = BytesMut::from(&bytes[..18]);
        assert!(matches!(
            split.decode(&mut buf),
            Err(FrameError::TooLarge { max: 16, .. })
        ));
        // At the cap, the cut-off frame is skipped and the next one read.
        let mut bytes = vec![START];
        bytes.extend_from_slice(&[b'x'; 16]);
        bytes.extend_from_slice(&framed("MSH|next"));
        let mut codec = MllpCodec::new(16);
        let mut buf = BytesMut::from(&bytes[..]);
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!((text(&frame), frame.skipped), ("MSH|next", 17));
    }

    /// Found beside the one above: a payload of exactly the cap whose end block came in one
    /// read and its CR in the next was refused (the pending end block counted as payload).
    #[test]
    fn a_frame_of_exactly_the_cap_split_before_its_cr_is_taken() {
        let bytes = framed("MSH|sixteen-byte");
        assert_eq!(bytes.len(), 16 + 3);
        let mut codec = MllpCodec::new(16);
        let mut buf = BytesMut::from(&bytes[..bytes.len() - 1]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&[CR]);
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(text(&frame), "MSH|sixteen-byte");
    }

    #[test]
    fn encode_wraps_the_payload() {
        let mut codec = MllpCodec::new(10);
        let mut out = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"MSA|AA"), &mut out)
            .unwrap();
        assert_eq!(out.as_ref(), framed("MSA|AA").as_slice());
    }
}
