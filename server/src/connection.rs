//! One client connection, served by the core that accepted it: a reader task that decodes frames
//! and starts their calls, and a writer task that sends the responses in request order.
//!
//! Invariants:
//! - responses leave in the order their requests arrived (one FIFO of in-flight requests; the
//!   writer waits for its head), while later requests' calls already run on their shards;
//! - at most `connection_in_flight_max` requests are decoded and unanswered at once (at least the
//!   protocol's `PIPELINE_DEPTH_MAX`, checked by config validation); past it the reader stops
//!   reading, so a client that does not read its responses stops being read itself;
//! - the read buffer never exceeds `READ_BUFFER_SIZE_MAX` (one maximal frame plus one receive);
//!   a frame above `LARGE_FRAME_SIZE_MIN` is buffered only once its bytes are reserved from the
//!   core's input budget, and the buffer shrinks back after it (large_frame.rs);
//! - the writer gathers at most [`OUTPUT_BUFFER_SIZE_MAX`] bytes plus one small response per send;
//!   a large response is encoded into a buffer of its own, under the core's output budget, and
//!   sent from it after the gathered bytes;
//! - a bad frame gets an error response: when its length is known the connection continues after
//!   it; after an oversized length prefix the connection sends that error and closes;
//! - no input ever panics the server: decoding is total and every failure becomes a response.

use crate::constants::{LARGE_FRAME_SIZE_MIN, OUTPUT_BUFFER_SIZE_MAX, RECV_CHUNK_SIZE};
use crate::large_frame::{receive, send_large, InputBuffer};
use crate::request::{plan, InFlight};
use crate::server::{CoreContext, Shared};
use crate::sync::{race, Either, Event, Notify};
use jube_protocol::constants::{FRAME_PREFIX_SIZE, FRAME_SIZE_MAX};
use jube_protocol::{decode_request, encode_response_in_place, Decoded, Response, Status};
use jube_runtime::TcpStream;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Counts an open connection for `connections_max` and INFO; uncounts it when dropped.
pub struct ConnectionGuard {
    shared: Arc<Shared>,
}

impl ConnectionGuard {
    /// Counts a new connection, or returns None if `connections_max` are already open.
    pub fn admit(shared: &Arc<Shared>) -> Option<ConnectionGuard> {
        let max = shared.config.server.connections_max;
        let admitted = shared
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .is_ok();
        if !admitted {
            shared.connections_rejected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        shared.connections_total.fetch_add(1, Ordering::Relaxed);
        Some(ConnectionGuard {
            shared: shared.clone(),
        })
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Connection {
    stream: TcpStream,
    queue: RefCell<VecDeque<InFlight>>,
    /// Requests decoded and not yet encoded: the queue plus the one the writer waits for.
    in_flight: Cell<usize>,
    /// Reader to writer: the queue grew or the reader finished.
    queued: Notify,
    /// Writer to reader: a request left the queue.
    space: Notify,
    reader_done: Cell<bool>,
    /// The writer failed: the reader stops.
    closing: Event,
    _guard: ConnectionGuard,
}

/// Serves `stream` until the client closes it, an I/O error, or shutdown.
pub async fn serve(stream: TcpStream, context: Rc<CoreContext>, guard: ConnectionGuard) {
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
    let reader = read_loop(connection.clone(), context.clone());
    if let Err(error) = jube_runtime::try_spawn(jube_runtime::Priority::Foreground, reader) {
        tracing::warn!(%error, "connection closed: no task for its reader");
        return;
    }
    write_loop(&connection, &context).await;
    connection.closing.set();
}

impl Connection {
    fn push(&self, item: InFlight) {
        self.in_flight.set(self.in_flight.get() + 1);
        self.queue.borrow_mut().push_back(item);
        self.queued.notify();
    }

    /// Waits for shutdown or for the writer to give up; whichever comes first.
    async fn stopped(&self, shutdown: &Event) {
        let _ = race(shutdown.wait(), self.closing.wait()).await;
    }

    fn finish_reading(&self) {
        self.reader_done.set(true);
        self.queued.notify();
    }
}

/// What the decoder left for the reader to do.
enum Decode {
    /// Every whole frame was consumed; the next one needs this many bytes in all: read more.
    More { needed: usize },
    /// The stream cannot continue (an oversized length prefix) or the server stops.
    Stop,
}

async fn read_loop(connection: Rc<Connection>, context: Rc<CoreContext>) {
    let mut input = InputBuffer::default();
    let mut chunk = vec![0u8; RECV_CHUNK_SIZE];
    loop {
        let needed = match decode_frames(&connection, &context, &mut input).await {
            Decode::More { needed } => needed,
            Decode::Stop => break,
        };
        // A large frame waits here for its core's budget: backpressure, not an error.
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
            tracing::debug!("connection closed: a large frame stalled");
            break;
        };
        chunk = buffer;
        match result {
            Ok(0) => break,
            Ok(count) => input.extend(&chunk[..count]),
            Err(error) => {
                tracing::debug!(%error, "connection receive failed");
                break;
            }
        }
    }
    connection.finish_reading();
}

/// Decodes every whole frame at the front of `input`, starting each request, and removes them.
async fn decode_frames(
    connection: &Connection,
    context: &CoreContext,
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
        match decode_request(unread) {
            Decoded::Frame { len, message } => {
                consumed += len;
                connection.push(plan(
                    &context.dispatcher,
                    &context.info,
                    context.shared.shard_count,
                    message,
                ));
            }
            Decoded::NeedMore(missing) => {
                break Decode::More {
                    needed: unread.len() + missing,
                }
            }
            Decoded::Error(error) => {
                context.dispatcher.metrics.record_status(error.status());
                tracing::debug!(%error, "bad frame");
                connection.push(InFlight::ready(None, error.to_response()));
                match error.frame_len() {
                    Some(len) => consumed += len,
                    None => break Decode::Stop,
                }
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
        let response = head.finish_recorded(&context.dispatcher.metrics).await;
        if write(connection, context, response, &mut output)
            .await
            .is_err()
        {
            return;
        }
        // Gather the responses that are already complete into the same send.
        while output.len() < OUTPUT_BUFFER_SIZE_MAX {
            let ready = connection
                .queue
                .borrow()
                .front()
                .is_some_and(InFlight::is_ready);
            if !ready {
                break;
            }
            let Some(next) = connection.queue.borrow_mut().pop_front() else {
                break;
            };
            let response = next.finish_recorded(&context.dispatcher.metrics).await;
            if write(connection, context, response, &mut output)
                .await
                .is_err()
            {
                return;
            }
        }
        if send_output(connection, &mut output).await.is_err() {
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
    result.map_err(|error| tracing::debug!(%error, "connection send failed"))
}

/// Writes `response` and lets the reader read one more request: a small response is appended to
/// `output`; a large one (a Get of a large value) is sent from a buffer of its own, after `output`,
/// once the core's output budget holds its bytes, so neither buffer keeps a large capacity.
async fn write(
    connection: &Connection,
    context: &CoreContext,
    response: Response,
    output: &mut Vec<u8>,
) -> Result<(), ()> {
    let size_max = response.encoded_size_max();
    let result = if size_max <= LARGE_FRAME_SIZE_MIN {
        // The core's reused encoder: no builder allocated per response. Encoding is synchronous,
        // so no other task of this core can hold it meanwhile.
        let encoded = context
            .encoder
            .borrow_mut()
            .encode(&response)
            .map(|frame| output.extend_from_slice(frame));
        if encoded.is_err() {
            // Only a response above a frame (impossible below the large-frame size) fails:
            // the general path answers FrameTooLarge.
            if let Some((frame, offset)) = encode(context, &response) {
                output.extend_from_slice(frame.get(offset..).unwrap_or_default());
            }
        }
        Ok(())
    } else {
        match send_output(connection, output).await {
            Ok(()) => send_large_response(connection, context, &response, size_max).await,
            Err(()) => Err(()),
        }
    };
    connection.in_flight.set(connection.in_flight.get() - 1);
    connection.space.notify();
    result
}

async fn send_large_response(
    connection: &Connection,
    context: &CoreContext,
    response: &Response,
    size_max: usize,
) -> Result<(), ()> {
    let reservation = context
        .large_output
        .reserve(size_max.min(FRAME_PREFIX_SIZE + FRAME_SIZE_MAX))
        .await;
    let Some((frame, offset)) = encode(context, response) else {
        return Ok(());
    };
    debug_assert!(frame.len() <= reservation.bytes().max(size_max));
    let result = send_large(&connection.stream, frame, offset).await;
    drop(reservation);
    result.map_err(|error| tracing::debug!(%error, "connection send of a large reply failed"))
}

/// Encodes `response` as a frame (`buffer[offset..]`), or its `FrameTooLarge` error if it does
/// not fit one; None only if even that fails (logged).
fn encode(context: &CoreContext, response: &Response) -> Option<(Vec<u8>, usize)> {
    let frame = encode_response_in_place(response).or_else(|error| {
        context
            .dispatcher
            .metrics
            .record_status(Status::FrameTooLarge);
        encode_response_in_place(&Response::error(
            response.request_id,
            Status::FrameTooLarge,
            format!("the response is too large for one frame ({error}): ask for less"),
        ))
    });
    match frame {
        Ok(frame) => Some(frame),
        Err(error) => {
            tracing::error!(%error, "an error response could not be encoded");
            None
        }
    }
}
