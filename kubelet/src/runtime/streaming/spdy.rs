//! The slice of SPDY/3.1 framing port-forwarding needs
//! (<https://www.chromium.org/spdy/spdy-protocol/spdy-protocol-draft3-1/>): an 8-byte header,
//! control frames (`SYN_STREAM`, `SYN_REPLY`, `RST_STREAM`, `PING`, `GOAWAY`, …) and data
//! frames with a FIN flag. Header blocks are zlib streams primed with the protocol's fixed
//! dictionary, one compression context per direction for the whole connection — so every
//! header block received must be inflated, in order, even when its content is not needed.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The SPDY/3 header compression dictionary (section 2.6.10.1 of the draft).
const DICTIONARY: &[u8] = include_bytes!("spdy3.dict");

pub const SYN_STREAM: u16 = 1;
pub const SYN_REPLY: u16 = 2;
pub const RST_STREAM: u16 = 3;
pub const PING: u16 = 6;
pub const GOAWAY: u16 = 7;
pub const HEADERS: u16 = 8;
pub const FLAG_FIN: u8 = 1;

/// One frame as read.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Control {
        kind: u16,
        flags: u8,
        data: Vec<u8>,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
}

/// Takes one complete frame off the front of `buf`, if there is one.
pub fn take_frame(buf: &mut Vec<u8>) -> Option<Frame> {
    if buf.len() < 8 {
        return None;
    }
    let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
    if buf.len() < 8 + len {
        return None;
    }
    let head: [u8; 8] = buf.get(..8)?.try_into().ok()?;
    let data = buf[8..8 + len].to_vec();
    buf.drain(..8 + len);
    let flags = head[4];
    Some(if head[0] & 0x80 != 0 {
        Frame::Control {
            kind: u16::from_be_bytes([head[2], head[3]]),
            flags,
            data,
        }
    } else {
        Frame::Data {
            stream: u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff,
            flags,
            data,
        }
    })
}

fn with_len(mut head: Vec<u8>, flags: u8, data: &[u8]) -> Vec<u8> {
    head.push(flags);
    head.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    head.extend_from_slice(data);
    head
}

/// A control frame of `kind`.
pub fn control(kind: u16, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut head = vec![0x80, 3];
    head.extend_from_slice(&kind.to_be_bytes());
    with_len(head, flags, data)
}

/// A data frame on `stream`.
pub fn data(stream: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    with_len(
        (stream & 0x7fff_ffff).to_be_bytes().to_vec(),
        if fin { FLAG_FIN } else { 0 },
        data,
    )
}

/// The stream id a control frame's payload starts with.
pub fn stream_id(data: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(..4)?.try_into().ok()?) & 0x7fff_ffff)
}

/// The most an inflated header block may hold (Go's `http.DefaultMaxHeaderBytes`).
pub const MAX_HEADER_BLOCK: usize = 1 << 20;

/// The connection's two header compression contexts.
pub struct Headers {
    inflate: Decompress,
    deflate: Compress,
}

impl Default for Headers {
    fn default() -> Self {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate
            .set_dictionary(DICTIONARY)
            .expect("a fresh compressor takes a dictionary");
        Self {
            inflate: Decompress::new(true),
            deflate,
        }
    }
}

impl Headers {
    /// Inflates and decodes one header block: names (lowercase) and values.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut raw = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            let before = self.inflate.total_in();
            raw.reserve(4096);
            let result = self
                .inflate
                .decompress_vec(input, &mut raw, FlushDecompress::Sync);
            input = &input[(self.inflate.total_in() - before) as usize..];
            if raw.len() > MAX_HEADER_BLOCK {
                // A few kilobytes of zlib inflate to megabytes: refuse before allocating more.
                return Err(format!(
                    "header block inflates past the limit of {MAX_HEADER_BLOCK} bytes"
                ));
            }
            match result {
                Ok(Status::StreamEnd) => break,
                Ok(_) if input.is_empty() && raw.len() < raw.capacity() => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| e.to_string())?;
                }
                Err(e) => return Err(format!("header block: {e}")),
            }
        }
        parse_block(&raw).ok_or_else(|| "malformed header block".to_owned())
    }

    /// Encodes and deflates a header block.
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Vec<u8> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (k, v) in headers {
            for s in [k, v] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.deflate.total_in();
            if self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .is_err()
            {
                // zlib fails only on a corrupted stream state, which this encoder never leaves;
                // the peer then sees a bad block and ends the session.
                return out;
            }
            input = &input[(self.deflate.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

fn parse_block(raw: &[u8]) -> Option<Vec<(String, String)>> {
    let mut pos = 0;
    let mut next = |len: usize| -> Option<&[u8]> {
        let s = raw.get(pos..pos + len)?;
        pos += len;
        Some(s)
    };
    let count = u32::from_be_bytes(next(4)?.try_into().ok()?);
    let mut out = Vec::new();
    for _ in 0..count {
        let n = u32::from_be_bytes(next(4)?.try_into().ok()?) as usize;
        let name = String::from_utf8_lossy(next(n)?).to_lowercase();
        let n = u32::from_be_bytes(next(4)?.try_into().ok()?) as usize;
        let value = String::from_utf8_lossy(next(n)?).into_owned();
        out.push((name, value));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut buf = control(PING, 0, &7u32.to_be_bytes());
        buf.extend(data(5, true, b"hello"));
        buf.extend_from_slice(&[0x80, 3]);
        assert_eq!(
            take_frame(&mut buf),
            Some(Frame::Control {
                kind: PING,
                flags: 0,
                data: vec![0, 0, 0, 7]
            })
        );
        assert_eq!(
            take_frame(&mut buf),
            Some(Frame::Data {
                stream: 5,
                flags: FLAG_FIN,
                data: b"hello".to_vec()
            })
        );
        assert_eq!(take_frame(&mut buf), None);
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn header_blocks_share_one_context_per_direction() {
        // The dictionary is the protocol's: its Adler-32 is what peers put in the zlib header.
        let mut c = Compress::new(Compression::default(), true);
        assert_eq!(
            (DICTIONARY.len(), c.set_dictionary(DICTIONARY).unwrap()),
            (1423, 0xe3c6_a7c2)
        );
        let (mut client, mut server) = (Headers::default(), Headers::default());
        let first = client.encode(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]);
        let second = client.encode(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]);
        assert_eq!(
            server.decode(&first).unwrap()[0],
            ("streamtype".into(), "error".into())
        );
        let h = server.decode(&second).unwrap();
        assert_eq!(
            h,
            [
                ("streamtype".into(), "data".into()),
                ("port".into(), "80".into()),
                ("requestid".into(), "0".into())
            ]
        );
        assert!(
            server
                .decode(&server_reply(&mut client))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_header_block_that_inflates_past_the_limit_is_refused() {
        // 8 MiB of one repeated value compresses to a few kilobytes.
        let big = "a".repeat(8 << 20);
        let (mut client, mut server) = (Headers::default(), Headers::default());
        let bomb = client.encode(&[("x", &big)]);
        assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
        let err = server.decode(&bomb).unwrap_err();
        assert!(err.contains("past the limit"), "{err}");
    }

    fn server_reply(h: &mut Headers) -> Vec<u8> {
        h.encode(&[])
    }
}
