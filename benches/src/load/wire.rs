//! The two wire protocols behind one small interface: encode a GET, SET,
//! SCAN or PING into a connection's write buffer, and decode the next reply
//! into an `Outcome` (ok, miss, or an error the server answered).
//!
//! Native requests go through jube-protocol's `encode_request` and
//! `decode_response`; RESP through `resp`. Both protocols answer in request
//! order on a connection, so a connection is a FIFO of requests in flight.
//!
//! Invariants:
//! - a native request carries the connection's next id (from 1, +1 each), and
//!   a reply whose id or operation differs from the oldest in flight is a
//!   protocol error, which ends the run (the stream can no longer be
//!   trusted);
//! - a server's error reply (RESP `-ERR`, a native failure other than
//!   `NotFound`) is an `Outcome::Error`, counted, never fatal by itself.

use std::ops::Bound;

use jube_protocol::{
    decode_response, encode_request, Decoded, Entry, Get, Operation, OperationKind, Reply, Request,
    Scan, Status,
};

use super::resp;

/// Which protocol a run speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// jube's FlatBuffers protocol (docs/protocol.md).
    Native,
    /// RESP2, as Redis and jube's RESP listener speak it.
    Resp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Native => "native",
            Protocol::Resp => "resp",
        }
    }
}

/// One request as the wire sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command<'a> {
    Ping,
    Get {
        key: &'a [u8],
    },
    Set {
        key: &'a [u8],
        value: &'a [u8],
    },
    /// Up to `count` entries from `start` onwards (native only).
    Scan {
        start: &'a [u8],
        count: u32,
    },
}

impl Command<'_> {
    fn kind(&self) -> OperationKind {
        match self {
            Command::Ping => OperationKind::Ping,
            Command::Get { .. } => OperationKind::Get,
            Command::Set { .. } => OperationKind::Put,
            Command::Scan { .. } => OperationKind::Scan,
        }
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// A GET of a key that does not exist.
    Miss,
    /// The server refused or failed the request.
    Error(String),
}

/// The server broke the protocol: the run cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub String);

/// What a connection remembers about a request until its reply: the native
/// id and operation to check the reply against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub id: u64,
    pub kind: OperationKind,
}

/// Per-connection protocol state.
#[derive(Debug)]
pub struct Codec {
    protocol: Protocol,
    next_id: u64,
}

impl Codec {
    pub fn new(protocol: Protocol) -> Codec {
        Codec {
            protocol,
            next_id: 1,
        }
    }

    /// Appends `command` to `out`. Fails only for what the protocol cannot
    /// express (a RESP scan, a native frame over the size limit).
    pub fn encode(&mut self, command: Command<'_>, out: &mut Vec<u8>) -> Result<Sent, WireError> {
        let id = self.next_id;
        self.next_id += 1;
        let sent = Sent {
            id,
            kind: command.kind(),
        };
        match self.protocol {
            Protocol::Resp => {
                match command {
                    Command::Ping => resp::encode_command(&[b"PING"], out),
                    Command::Get { key } => resp::encode_command(&[b"GET", key], out),
                    Command::Set { key, value } => resp::encode_command(&[b"SET", key, value], out),
                    Command::Scan { .. } => {
                        return Err(WireError(
                            "RESP has no range scan (SCAN walks hash slots with a cursor, \
                             not a key range): scans are native-only"
                                .into(),
                        ))
                    }
                }
                Ok(sent)
            }
            Protocol::Native => {
                let op = match command {
                    Command::Ping => Operation::Ping,
                    Command::Get { key } => Operation::Get(Get::new(key)),
                    Command::Set { key, value } => Operation::Put(Entry::new(key, value)),
                    Command::Scan { start, count } => Operation::Scan(Scan {
                        start: Bound::Included(start.to_vec()),
                        end: Bound::Unbounded,
                        limit: count,
                        reverse: false,
                        continuation: None,
                    }),
                };
                let frame = encode_request(&Request { id, op })
                    .map_err(|e| WireError(format!("cannot encode request: {e}")))?;
                out.extend_from_slice(&frame);
                Ok(sent)
            }
        }
    }

    /// Decodes the reply at the start of `buf` to the request `sent`:
    /// `Ok(None)` if it has not fully arrived, else its length and outcome.
    pub fn decode(&self, buf: &[u8], sent: Sent) -> Result<Option<(usize, Outcome)>, WireError> {
        match self.protocol {
            Protocol::Resp => decode_resp(buf, sent),
            Protocol::Native => decode_native(buf, sent),
        }
    }
}

fn decode_resp(buf: &[u8], sent: Sent) -> Result<Option<(usize, Outcome)>, WireError> {
    let (len, value) = match resp::parse(buf).map_err(|e| WireError(e.to_string()))? {
        resp::Parsed::NeedMore => return Ok(None),
        resp::Parsed::Value { len, value } => (len, value),
    };
    let outcome = match (sent.kind, value) {
        (_, resp::Value::Error(message)) => {
            Outcome::Error(String::from_utf8_lossy(message).into_owned())
        }
        (OperationKind::Get, resp::Value::Bulk(Some(_))) => Outcome::Ok,
        (OperationKind::Get, resp::Value::Bulk(None)) => Outcome::Miss,
        (OperationKind::Put, resp::Value::Simple(b"OK")) => Outcome::Ok,
        (OperationKind::Ping, resp::Value::Simple(b"PONG")) => Outcome::Ok,
        (kind, other) => {
            return Err(WireError(format!(
                "unexpected RESP reply to {kind:?}: {other:?}"
            )))
        }
    };
    Ok(Some((len, outcome)))
}

fn decode_native(buf: &[u8], sent: Sent) -> Result<Option<(usize, Outcome)>, WireError> {
    let (len, response) = match decode_response(buf) {
        Decoded::NeedMore(_) => return Ok(None),
        Decoded::Frame { len, message } => (len, message),
        Decoded::Error(error) => return Err(WireError(format!("bad response frame: {error}"))),
    };
    if response.request_id != sent.id {
        return Err(WireError(format!(
            "response to request {} arrived where {} was expected",
            response.request_id, sent.id
        )));
    }
    let outcome = match response.outcome {
        Ok(reply) if reply.kind() == sent.kind => match reply {
            Reply::Get(_) | Reply::Put | Reply::Scan(_) | Reply::Ping => Outcome::Ok,
            other => return Err(WireError(format!("unexpected reply {other:?}"))),
        },
        Ok(reply) => {
            return Err(WireError(format!(
                "a {:?} reply answered a {:?} request",
                reply.kind(),
                sent.kind
            )))
        }
        Err(failure) if failure.status == Status::NotFound && sent.kind == OperationKind::Get => {
            Outcome::Miss
        }
        Err(failure) => Outcome::Error(failure.to_string()),
    };
    Ok(Some((len, outcome)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jube_protocol::{decode_request, encode_response, GetReply, Response};

    #[test]
    fn native_round_trip_through_the_protocol_crate() {
        let mut codec = Codec::new(Protocol::Native);
        let mut out = Vec::new();
        let get = codec.encode(Command::Get { key: b"k1" }, &mut out).unwrap();
        let set = codec
            .encode(
                Command::Set {
                    key: b"k2",
                    value: b"v",
                },
                &mut out,
            )
            .unwrap();
        assert_eq!((get.id, set.id), (1, 2));
        let Decoded::Frame { len, message } = decode_request(&out) else {
            panic!("not a request frame");
        };
        assert_eq!(message.op, Operation::Get(Get::new(&b"k1"[..])));
        assert!(matches!(decode_request(&out[len..]), Decoded::Frame { .. }));

        let mut replies = encode_response(&Response::error(1, Status::NotFound, "")).unwrap();
        replies.extend(encode_response(&Response::ok(2, Reply::Put)).unwrap());
        let (first, outcome) = codec.decode(&replies, get).unwrap().unwrap();
        assert_eq!(outcome, Outcome::Miss);
        assert_eq!(codec.decode(&replies[..first - 1], set).unwrap(), None);
        let (_, outcome) = codec.decode(&replies[first..], set).unwrap().unwrap();
        assert_eq!(outcome, Outcome::Ok);
    }

    #[test]
    fn native_mismatches_are_protocol_errors_and_failures_are_outcomes() {
        let codec = Codec::new(Protocol::Native);
        let get = Sent {
            id: 5,
            kind: OperationKind::Get,
        };
        let wrong_id = encode_response(&Response::ok(6, Reply::Put)).unwrap();
        assert!(codec.decode(&wrong_id, get).is_err());
        let wrong_kind = encode_response(&Response::ok(5, Reply::Put)).unwrap();
        assert!(codec.decode(&wrong_kind, get).is_err());
        let busy = encode_response(&Response::error(5, Status::Busy, "later")).unwrap();
        let (_, outcome) = codec.decode(&busy, get).unwrap().unwrap();
        assert!(matches!(outcome, Outcome::Error(m) if m.contains("Busy")));
        let hit = encode_response(&Response::ok(
            5,
            Reply::Get(GetReply {
                value: b"v".to_vec(),
                version: None,
                ttl_remaining_ms: None,
            }),
        ))
        .unwrap();
        assert_eq!(codec.decode(&hit, get).unwrap().unwrap().1, Outcome::Ok);
    }

    #[test]
    fn resp_outcomes() {
        let mut codec = Codec::new(Protocol::Resp);
        let mut out = Vec::new();
        let get = codec.encode(Command::Get { key: b"a" }, &mut out).unwrap();
        let set = codec
            .encode(
                Command::Set {
                    key: b"a",
                    value: b"1",
                },
                &mut out,
            )
            .unwrap();
        assert_eq!(
            out,
            b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n"
        );
        assert_eq!(
            codec.decode(b"$-1\r\n", get).unwrap(),
            Some((5, Outcome::Miss))
        );
        assert_eq!(
            codec.decode(b"$1\r\nx\r\n", get).unwrap(),
            Some((7, Outcome::Ok))
        );
        assert_eq!(codec.decode(b"$1\r\nx", get).unwrap(), None);
        assert_eq!(
            codec.decode(b"+OK\r\n", set).unwrap(),
            Some((5, Outcome::Ok))
        );
        assert_eq!(
            codec.decode(b"-OOM no\r\n", set).unwrap(),
            Some((9, Outcome::Error("OOM no".into())))
        );
        assert!(codec.decode(b":1\r\n", set).is_err());
        assert!(codec
            .encode(
                Command::Scan {
                    start: b"a",
                    count: 1
                },
                &mut out
            )
            .is_err());
    }
}
