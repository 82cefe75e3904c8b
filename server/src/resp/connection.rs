//! One RESP client connection, served by the core that accepted it: a reader task that decodes
//! requests and starts their work, and a writer task that sends the replies in request order.
//!
//! Invariants:
//! - replies leave in the order the requests arrived (one FIFO; the writer waits for its head),
//!   while later requests' shard calls already run;
//! - each reply is encoded in the RESP version the connection spoke when its request was read,
//!   so `HELLO 3` affects exactly the replies after its own;
//! - at most `connection_in_flight_max` requests are decoded and unanswered; past it the reader
//!   stops reading;
//! - the read buffer stays under `RESP_READ_BUFFER_SIZE_MAX` (the decoder refuses a request
//!   longer than `REQUEST_SIZE_MAX` before awaiting its bytes); a request above
//!   `LARGE_FRAME_SIZE_MIN` is buffered only under the core's input budget, and a reply above it
//!   is encoded into a buffer of its own under the output budget (large_frame.rs);
//! - a protocol error is answered `-ERR Protocol error: ...` and the connection then closes (after
//!   the replies before it); QUIT is answered `+OK` and closes likewise; nothing panics on input.

use super::execute::{execute, Item, Session};
use crate::connection::ConnectionGuard;
use crate::constants::{LARGE_FRAME_SIZE_MIN, OUTPUT_BUFFER_SIZE_MAX, RECV_CHUNK_SIZE};
use crate::large_frame::{receive, send_large, InputBuffer};
use crate::metrics::RespCounter;
use crate::server::CoreContext;
use crate::sync::{race, Either, Event, Notify};
use jube_protocol::constants::{FRAME_PREFIX_SIZE, FRAME_SIZE_MAX};
use jube_protocol::resp::{decode, size_hint, Reply, RespVersion};
use jube_runtime::TcpStream;
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

struct Connection {
    stream: TcpStream,
    queue: RefCell<VecDeque<Item>>,
    /// Requests decoded and not yet encoded: the queue plus the one the writer waits for.
    in_flight: Cell<usize>,
    queued: Notify,
    space: Notify,
    reader_done: Cell<bool>,
    /// The writer finished (error, QUIT, protocol error): the reader stops.
    closing: Event,
    _guard: ConnectionGuard,
}

impl Connection {
    fn push(&self, item: Item) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.queue.borrow_mut().push_back(item);
        self.queued.notify();
    }

    async fn stopped(&self, shutdown: &Event) {
        let _ = race(shutdown.wait(), self.closing.wait()).await;
    }
}

/// Serves a RESP client until it closes, QUIT, a protocol error, an I/O error, or shutdown.
pub async fn serve(stream: TcpStream, context: Rc<CoreContext>, guard: ConnectionGuard) {
    let peer = stream
        .peer_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_default();
    let connection = Rc::new(Connection {
        stream,
        queue: RefCell::new(VecDeque::new()),
        in_flight: Cell::new(0),
        queued: Notify::default(),
        space: Notify::default(),
        reader_done: Cell::new(false),
        closing: Event::default(),
        _guard: guard,
    });
    let session = Session::new(context.shared.resp.client_id(), peer);
    let reader = read_loop(connection.clone(), context.clone(), session);
    if let Err(error) = jube_runtime::try_spawn(jube_runtime::Priority::Foreground, reader) {
        tracing::warn!(%error, "RESP connection closed: no task for its reader");
        return;
    }
    write_loop(&connection, &context).await;
    connection.closing.set();
}

/// Tells a client over `connections_max` why it is refused, then closes.
pub async fn reject(stream: TcpStream, connections_max: usize) {
    let reply = Reply::Error(Cow::Owned(format!(
        "ERR max number of clients reached ({connections_max})"
    )));
    let _ = stream.send_all(reply.to_bytes(RespVersion::Resp2)).await;
}

/// What decoding left for the reader to do.
enum Decode {
    /// Every whole request was run; the next needs at least this many bytes in all.
    More {
        needed: usize,
    },
    Stop,
}

async fn read_loop(connection: Rc<Connection>, context: Rc<CoreContext>, mut session: Session) {
    let mut input = InputBuffer::default();
    let mut chunk = vec![0u8; RECV_CHUNK_SIZE];
    loop {
        let needed = match decode_requests(&connection, &context, &mut session, &mut input).await {
            Decode::More { needed } => needed,
            Decode::Stop => break,
        };
        // A large request waits here for its core's budget: backpressure, not an error.
        let prepared = race(
            input.prepare(needed, &context.large_input),
            connection.stopped(&context.shutdown),
        )
        .await;
        if let Either::Right(()) = prepared {
            break;
        }
        let received = race(
            receive(&connection.stream, chunk, input.holds_budget()),
            connection.stopped(&context.shutdown),
        )
        .await;
        let Either::Left(received) = received else {
            break;
        };
        let Ok((result, buffer)) = received else {
            tracing::debug!("RESP connection closed: a large request stalled");
            break;
        };
        chunk = buffer;
        match result {
            Ok(0) => break,
            Ok(count) => input.extend(&chunk[..count]),
            Err(error) => {
                tracing::debug!(%error, "RESP receive failed");
                break;
            }
        }
    }
    connection.reader_done.set(true);
    connection.queued.notify();
}

/// Runs every whole request at the front of `input` and removes them.
async fn decode_requests(
    connection: &Connection,
    context: &CoreContext,
    session: &mut Session,
    input: &mut InputBuffer,
) -> Decode {
    let mut consumed = 0;
    let outcome = loop {
        while connection.in_flight.get() >= context.shared.config.server.connection_in_flight_max {
            if let Either::Right(()) = race(
                connection.space.notified(),
                connection.stopped(&context.shutdown),
            )
            .await
            {
                break;
            }
        }
        if context.shutdown.is_set() || connection.closing.is_set() {
            break Decode::Stop;
        }
        let unread = input.unread().get(consumed..).unwrap_or_default();
        match decode(unread) {
            jube_protocol::resp::Decoded::Command { len, args } => {
                consumed += len;
                if args.is_empty() {
                    continue;
                }
                let item = execute(context, session, args).await;
                let close = item.close_after;
                connection.push(item);
                if close {
                    break Decode::Stop;
                }
            }
            jube_protocol::resp::Decoded::NeedMore => {
                break Decode::More {
                    needed: size_hint(unread).max(unread.len() + 1),
                }
            }
            jube_protocol::resp::Decoded::Error(error) => {
                tracing::debug!(%error, "RESP protocol error: closing");
                context
                    .dispatcher
                    .metrics
                    .record_resp(RespCounter::ProtocolError);
                connection.push(Item::closing(
                    Reply::Error(Cow::Owned(format!("ERR {error}"))),
                    session.version,
                ));
                break Decode::Stop;
            }
        }
    };
    input.consume(consumed);
    outcome
}

async fn write_loop(connection: &Connection, context: &CoreContext) {
    let mut output: Vec<u8> = Vec::with_capacity(OUTPUT_BUFFER_SIZE_MAX);
    loop {
        let head = connection.queue.borrow_mut().pop_front();
        let Some(head) = head else {
            if connection.reader_done.get() {
                return;
            }
            connection.queued.notified().await;
            continue;
        };
        let Ok(mut close) = encode(connection, context, head, &mut output).await else {
            return;
        };
        while !close && output.len() < OUTPUT_BUFFER_SIZE_MAX {
            let ready = connection
                .queue
                .borrow()
                .front()
                .is_some_and(Item::is_ready);
            if !ready {
                break;
            }
            let Some(next) = connection.queue.borrow_mut().pop_front() else {
                break;
            };
            let Ok(next_close) = encode(connection, context, next, &mut output).await else {
                return;
            };
            close = next_close;
        }
        if send_output(connection, &mut output).await.is_err() {
            return;
        }
        if close {
            return;
        }
    }
}

/// Sends and empties `output`.
async fn send_output(connection: &Connection, output: &mut Vec<u8>) -> Result<(), ()> {
    if output.is_empty() {
        return Ok(());
    }
    let (result, buffer) = connection.stream.send_all(std::mem::take(output)).await;
    *output = buffer;
    output.clear();
    result.map_err(|error| tracing::debug!(%error, "RESP send failed"))
}

/// Waits for `item`'s reply, writes it, counts it, and lets the reader read one more request. A
/// small reply is appended to `output`; a large one (a GET of a large value) is sent from a buffer
/// of its own, after `output`, once the core's output budget holds its bytes. Ok(true) if the
/// connection closes after this reply; Err if a send failed.
async fn encode(
    connection: &Connection,
    context: &CoreContext,
    item: Item,
    output: &mut Vec<u8>,
) -> Result<bool, ()> {
    let (version, close) = (item.version, item.close_after);
    let reply = item.finish(&context.dispatcher.metrics).await;
    let metrics = &context.dispatcher.metrics;
    metrics.record_resp(RespCounter::Command);
    if matches!(reply, Reply::Error(_)) {
        metrics.record_resp(RespCounter::Error);
    }
    let size_max = reply.encoded_size_max();
    let result = if size_max <= LARGE_FRAME_SIZE_MIN {
        reply.encode(version, output);
        Ok(close)
    } else {
        match send_output(connection, output).await {
            Ok(()) => {
                // A reply above the budget's largest reservation (a KEYS of 100 000 long keys)
                // reserves that much: the budget bounds the large values, not such lists.
                let reservation = context
                    .large_output
                    .reserve(size_max.min(FRAME_PREFIX_SIZE + FRAME_SIZE_MAX))
                    .await;
                let mut frame = Vec::with_capacity(size_max);
                reply.encode(version, &mut frame);
                drop(reply);
                let sent = send_large(&connection.stream, frame, 0).await;
                drop(reservation);
                sent.map(|()| close)
                    .map_err(|error| tracing::debug!(%error, "RESP send of a large reply failed"))
            }
            Err(()) => Err(()),
        }
    };
    connection.in_flight.set(connection.in_flight.get() - 1);
    connection.space.notify();
    result
}
