//! Framing: a frame is a little-endian u32 length followed by that many bytes
//! of FlatBuffer (a standard size-prefixed FlatBuffer with identifier JUBE).
//! Encoding and decoding do no I/O: the caller owns the buffers and sockets.
//!
//! Invariants:
//! - Nothing reads a frame's FlatBuffer before the verifier, with the limits
//!   of `constants` (`VERIFIER_*`), has accepted the whole frame.
//! - `decode_*` never panics, whatever the bytes (a proptest checks this).
//! - `Decoded::Frame { len, .. }` and `DecodeError::frame_len` say exactly
//!   how many bytes the frame occupied, prefix included, so the caller can
//!   drop them and decode the next frame; only a length prefix above
//!   `FRAME_SIZE_MAX` leaves the stream without a known next boundary.
//! - `encode_*` never produces a frame that `decode_*` would reject as too
//!   large: it returns `EncodeError::FrameTooLarge` instead.

use flatbuffers::{FlatBufferBuilder, VerifierOptions};

use crate::codec;
use crate::constants::{
    FILE_IDENTIFIER, FRAME_PREFIX_SIZE, FRAME_SIZE_MAX, PROTOCOL_VERSION, PROTOCOL_VERSION_MIN,
    VERIFIER_APPARENT_SIZE_MAX, VERIFIER_DEPTH_MAX, VERIFIER_TABLES_MAX,
};
use crate::generated::jube::wire as fb;
use crate::message::{Failure, Operation, Request, Response, Status};

/// What `decode_request` / `decode_response` found at the start of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A whole, valid frame: `len` bytes (prefix included) to consume.
    Frame { len: usize, message: T },
    /// The buffer holds only part of a frame: read at least this many more
    /// bytes before trying again.
    NeedMore(usize),
    /// The frame at the start of the buffer is bad.
    Error(DecodeError),
}

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length prefix is above `FRAME_SIZE_MAX`. The next frame boundary is
    /// unknown: answer with this error (request id 0) and close the
    /// connection.
    #[error("frame length {len} is above the maximum {FRAME_SIZE_MAX}")]
    FrameTooLarge { len: usize },
    /// The frame failed FlatBuffers verification or lacks the JUBE
    /// identifier; its request id cannot be trusted, so it is unknown.
    #[error("malformed frame of {len} bytes: {reason}")]
    Malformed { len: usize, reason: String },
    /// A well-formed frame whose content breaks the protocol: an unsupported
    /// version, an unknown operation, a limit exceeded, a contradictory field.
    #[error("request {request_id} rejected: {failure}")]
    Rejected {
        len: usize,
        request_id: u64,
        failure: Failure,
    },
}

impl DecodeError {
    /// The status to answer with.
    pub fn status(&self) -> Status {
        match self {
            DecodeError::FrameTooLarge { .. } => Status::FrameTooLarge,
            DecodeError::Malformed { .. } => Status::MalformedFrame,
            DecodeError::Rejected { failure, .. } => failure.status,
        }
    }

    /// The request id, if the frame was sound enough to read it.
    pub fn request_id(&self) -> Option<u64> {
        match self {
            DecodeError::Rejected { request_id, .. } => Some(*request_id),
            _ => None,
        }
    }

    /// Bytes the bad frame occupied (prefix included), to skip before the
    /// next frame; `None` if the stream cannot be resynchronised and the
    /// connection must be closed.
    pub fn frame_len(&self) -> Option<usize> {
        match self {
            DecodeError::FrameTooLarge { .. } => None,
            DecodeError::Malformed { len, .. } | DecodeError::Rejected { len, .. } => Some(*len),
        }
    }

    /// The error response a server sends for this frame (request id 0 when
    /// unknown).
    pub fn to_response(&self) -> Response {
        let message = match self {
            DecodeError::Rejected { failure, .. } => failure.message.clone(),
            other => other.to_string(),
        };
        Response::error(self.request_id().unwrap_or(0), self.status(), message)
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded FlatBuffer would be `len` bytes, above `FRAME_SIZE_MAX`.
    #[error("encoded frame would be {len} bytes, above the maximum {FRAME_SIZE_MAX}")]
    FrameTooLarge { len: usize },
}

fn verifier_options() -> VerifierOptions {
    VerifierOptions {
        max_depth: VERIFIER_DEPTH_MAX,
        max_tables: VERIFIER_TABLES_MAX,
        max_apparent_size: VERIFIER_APPARENT_SIZE_MAX,
        ignore_missing_null_terminator: false,
    }
}

/// Splits the first frame off `buf`: the whole frame (prefix included) or
/// what is missing or wrong with it. Checks the length and the identifier;
/// the FlatBuffer itself is verified by the caller.
fn split_frame(buf: &[u8]) -> Decoded<&[u8]> {
    let Some(prefix) = buf.first_chunk::<FRAME_PREFIX_SIZE>() else {
        return Decoded::NeedMore(FRAME_PREFIX_SIZE - buf.len());
    };
    let payload_len = u32::from_le_bytes(*prefix) as usize;
    if payload_len > FRAME_SIZE_MAX {
        return Decoded::Error(DecodeError::FrameTooLarge { len: payload_len });
    }
    let len = FRAME_PREFIX_SIZE + payload_len;
    let Some(frame) = buf.get(..len) else {
        return Decoded::NeedMore(len - buf.len());
    };
    // Root offset (4 bytes) then the identifier (4 bytes).
    let identifier = frame.get(FRAME_PREFIX_SIZE + 4..FRAME_PREFIX_SIZE + 8);
    if identifier != Some(FILE_IDENTIFIER.as_bytes()) {
        return Decoded::Error(DecodeError::Malformed {
            len,
            reason: format!("no {FILE_IDENTIFIER} file identifier"),
        });
    }
    Decoded::Frame {
        len,
        message: frame,
    }
}

/// Decodes the first frame of `buf` as a request: length, verification,
/// version, operation, then `Request::validate`.
pub fn decode_request(buf: &[u8]) -> Decoded<Request> {
    let (len, frame) = match split_frame(buf) {
        Decoded::Frame { len, message } => (len, message),
        Decoded::NeedMore(count) => return Decoded::NeedMore(count),
        Decoded::Error(error) => return Decoded::Error(error),
    };
    let options = verifier_options();
    let table = match flatbuffers::size_prefixed_root_with_opts::<fb::Request>(&options, frame) {
        Ok(table) => table,
        Err(error) => {
            return Decoded::Error(DecodeError::Malformed {
                len,
                reason: error.to_string(),
            })
        }
    };
    let request_id = table.request_id();
    let rejected = |failure| {
        Decoded::Error(DecodeError::Rejected {
            len,
            request_id,
            failure,
        })
    };
    let version = table.version();
    if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&version) {
        return rejected(Failure::new(
            Status::UnsupportedVersion,
            format!(
                "protocol version {version} is not supported; this server speaks \
                 {PROTOCOL_VERSION_MIN} to {PROTOCOL_VERSION}"
            ),
        ));
    }
    let op = match codec::read_operation(&table) {
        Ok(op) => op,
        Err(failure) => return rejected(failure),
    };
    let request = Request { id: request_id, op };
    if let Err(failure) = request.validate() {
        return rejected(failure);
    }
    Decoded::Frame {
        len,
        message: request,
    }
}

/// Decodes the first frame of `buf` as a response. A response claiming a
/// version this client does not speak, or status Ok without a result, is
/// `Rejected` (with status `UnsupportedVersion` / `MalformedFrame`).
pub fn decode_response(buf: &[u8]) -> Decoded<Response> {
    let (len, frame) = match split_frame(buf) {
        Decoded::Frame { len, message } => (len, message),
        Decoded::NeedMore(count) => return Decoded::NeedMore(count),
        Decoded::Error(error) => return Decoded::Error(error),
    };
    let options = verifier_options();
    let table = match flatbuffers::size_prefixed_root_with_opts::<fb::Response>(&options, frame) {
        Ok(table) => table,
        Err(error) => {
            return Decoded::Error(DecodeError::Malformed {
                len,
                reason: error.to_string(),
            })
        }
    };
    let request_id = table.request_id();
    let version = table.version();
    if !(PROTOCOL_VERSION_MIN..=PROTOCOL_VERSION).contains(&version) {
        let failure = Failure::new(
            Status::UnsupportedVersion,
            format!(
                "response has protocol version {version}; this client speaks {PROTOCOL_VERSION}"
            ),
        );
        return Decoded::Error(DecodeError::Rejected {
            len,
            request_id,
            failure,
        });
    }
    match codec::read_outcome(&table) {
        Ok(outcome) => Decoded::Frame {
            len,
            message: Response {
                request_id,
                outcome,
            },
        },
        Err(reason) => {
            let failure = Failure::new(Status::MalformedFrame, reason);
            Decoded::Error(DecodeError::Rejected {
                len,
                request_id,
                failure,
            })
        }
    }
}

/// The finished frame of `fbb`: its builder's buffer and the offset where
/// the frame starts in it (the builder writes from the back).
fn finish_in_place(fbb: FlatBufferBuilder<'_>) -> Result<(Vec<u8>, usize), EncodeError> {
    let (buffer, head) = fbb.collapse();
    let payload_len = buffer.len() - head - FRAME_PREFIX_SIZE;
    if payload_len > FRAME_SIZE_MAX {
        return Err(EncodeError::FrameTooLarge { len: payload_len });
    }
    Ok((buffer, head))
}

fn finish(fbb: FlatBufferBuilder<'_>) -> Result<Vec<u8>, EncodeError> {
    let (mut frame, head) = finish_in_place(fbb)?;
    frame.drain(..head);
    Ok(frame)
}

/// Bytes of a request's frame beyond its keys and values, to size the
/// builder's first allocation; a `Put` of a 16 MiB value is then built
/// without regrowing (and recopying) its buffer.
const REQUEST_OVERHEAD_SIZE: usize = 256;

/// Encodes `request` as one frame. Does not validate limits other than the
/// frame size: call `Request::validate` first (the client does).
pub fn encode_request(request: &Request) -> Result<Vec<u8>, EncodeError> {
    encode_request_with_version(request, PROTOCOL_VERSION)
}

/// As `encode_request`, claiming another protocol version: for tests of
/// version negotiation.
#[doc(hidden)]
pub fn encode_request_with_version(
    request: &Request,
    version: u16,
) -> Result<Vec<u8>, EncodeError> {
    let data_size = match &request.op {
        Operation::Put(entry) => entry.key.len() + entry.value.len(),
        Operation::MultiPut { entries } => entries
            .iter()
            .map(|entry| entry.key.len() + entry.value.len() + REQUEST_OVERHEAD_SIZE)
            .sum(),
        _ => 0,
    };
    let mut fbb = FlatBufferBuilder::with_capacity(REQUEST_OVERHEAD_SIZE + data_size);
    codec::build_request(&mut fbb, request, version);
    finish(fbb)
}

/// Encodes `response` as one frame. A failure's message is cut to
/// `MESSAGE_SIZE_MAX` bytes. If the reply is too large for a frame, the
/// server should answer `Status::FrameTooLarge` instead.
pub fn encode_response(response: &Response) -> Result<Vec<u8>, EncodeError> {
    let mut fbb = FlatBufferBuilder::with_capacity(response.encoded_size_max());
    codec::build_response(&mut fbb, response, PROTOCOL_VERSION);
    finish(fbb)
}

/// Encodes responses one after another in one reused FlatBuffers builder: once the builder has
/// grown to the largest response it encoded, a response costs no allocation and no copy out of
/// a builder of its own. The builder keeps that capacity, so a server encodes only small
/// responses this way (large ones go through [`encode_response_in_place`]).
pub struct ResponseEncoder {
    fbb: FlatBufferBuilder<'static>,
}

impl Default for ResponseEncoder {
    fn default() -> Self {
        ResponseEncoder {
            fbb: FlatBufferBuilder::with_capacity(1024),
        }
    }
}

impl ResponseEncoder {
    /// The frame of `response` (length prefix included), the same bytes as
    /// [`encode_response`]; valid until the next call.
    pub fn encode(&mut self, response: &Response) -> Result<&[u8], EncodeError> {
        self.fbb.reset();
        codec::build_response(&mut self.fbb, response, PROTOCOL_VERSION);
        let frame = self.fbb.finished_data();
        let payload_len = frame.len() - FRAME_PREFIX_SIZE;
        if payload_len > FRAME_SIZE_MAX {
            return Err(EncodeError::FrameTooLarge { len: payload_len });
        }
        Ok(frame)
    }
}

/// As `encode_response`, without moving the frame to the front of its
/// buffer: the frame is `buffer[offset..]`. A server sends a large response
/// from there, saving a copy of its value. The buffer's length is at most
/// `Response::encoded_size_max` when that bound held.
pub fn encode_response_in_place(response: &Response) -> Result<(Vec<u8>, usize), EncodeError> {
    let mut fbb = FlatBufferBuilder::with_capacity(response.encoded_size_max());
    codec::build_response(&mut fbb, response, PROTOCOL_VERSION);
    finish_in_place(fbb)
}
