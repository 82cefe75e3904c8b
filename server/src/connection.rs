//! One client connection, served by the core that accepted it: a reader task that decodes frames
//! and starts their calls, and a writer task that sends the responses in request order.
//!
//! Invariants:
//! - responses leave in the order their requests arrived (one FIFO of in-flight requests; the
//!   writer waits for its head), while later requests' calls already run on their shards;
//! - at most `connection_in_flight_max` requests are decoded and unanswered at once (at least the
//!   protocol's `PIPELINE_DEPTH_MAX`, checked by config validation); past it the reader stops
//!   reading, so a client that does not read its responses stops being read itself;
//! - the read buffer never exceeds [`READ_BUFFER_SIZE_MAX`] (one maximal frame plus one receive),
//!   and the writer gathers at most [`OUTPUT_BUFFER_SIZE_MAX`] bytes plus one response per send;
//! - a bad frame gets an error response: when its length is known the connection continues after
//!   it; after an oversized length prefix the connection sends that error and closes;
//! - no input ever panics the server: decoding is total and every failure becomes a response.

use crate::constants::{OUTPUT_BUFFER_SIZE_MAX, READ_BUFFER_SIZE_MAX, RECV_CHUNK_SIZE};
use crate::request::{plan, InFlight};
use crate::server::{CoreContext, Shared};
use crate::sync::{race, Either, Event, Notify};
use jube_protocol::{decode_request, encode_response, Decoded, Response, Status};
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
    /// Every whole frame was consumed: read more.
    More,
    /// The stream cannot continue (an oversized length prefix) or the server stops.
    Stop,
}

async fn read_loop(connection: Rc<Connection>, context: Rc<CoreContext>) {
    let mut input: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; RECV_CHUNK_SIZE];
    loop {
        if let Decode::Stop = decode_frames(&connection, &context, &mut input).await {
            break;
        }
        debug_assert!(
            input.len() < READ_BUFFER_SIZE_MAX,
            "the read buffer outgrew one frame"
        );
        let received = race(
            connection.stream.recv(chunk),
            connection.stopped(&context.shutdown),
        )
        .await;
        let Either::Left((result, buffer)) = received else {
            break;
        };
        chunk = buffer;
        match result {
            Ok(0) => break,
            Ok(count) => input.extend_from_slice(&chunk[..count]),
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
    input: &mut Vec<u8>,
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
        match decode_request(&input[consumed..]) {
            Decoded::Frame { len, message } => {
                consumed += len;
                connection.push(plan(
                    &context.dispatcher,
                    &context.info,
                    context.shared.shard_count,
                    message,
                ));
            }
            Decoded::NeedMore(_) => break Decode::More,
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
    input.drain(..consumed);
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
        encode(
            connection,
            context,
            head.finish_recorded(&context.dispatcher.metrics).await,
            &mut output,
        );
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
            encode(
                connection,
                context,
                next.finish_recorded(&context.dispatcher.metrics).await,
                &mut output,
            );
        }
        let (result, buffer) = connection.stream.send_all(output).await;
        output = buffer;
        output.clear();
        if let Err(error) = result {
            tracing::debug!(%error, "connection send failed");
            return;
        }
    }
}

/// Appends `response` to `output` as a frame and lets the reader read one more request.
fn encode(
    connection: &Connection,
    context: &CoreContext,
    response: Response,
    output: &mut Vec<u8>,
) {
    let frame = encode_response(&response).or_else(|error| {
        context
            .dispatcher
            .metrics
            .record_status(Status::FrameTooLarge);
        encode_response(&Response::error(
            response.request_id,
            Status::FrameTooLarge,
            format!("the response is too large for one frame ({error}): ask for less"),
        ))
    });
    match frame {
        Ok(frame) => output.extend_from_slice(&frame),
        Err(error) => tracing::error!(%error, "an error response could not be encoded"),
    }
    connection.in_flight.set(connection.in_flight.get() - 1);
    connection.space.notify();
}
