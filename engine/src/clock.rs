//! Time, injected: the engine never reads a clock itself.
//!
//! Two clocks matter: a monotonic one (for intervals: group-commit delays, checkpoint intervals,
//! TTL deltas) and the wall clock (for expiry timestamps users give). Tests drive both by hand.

use std::cell::Cell;
use std::rc::Rc;

/// A source of time.
pub trait Clock {
    /// Nanoseconds on a monotonic clock with an arbitrary origin; never goes backwards.
    fn monotonic_ns(&self) -> u64;
    /// Milliseconds since the Unix epoch on the wall clock; may jump.
    fn wall_ms(&self) -> u64;
}

/// The real clocks of the machine.
#[derive(Debug, Clone)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        SystemClock {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

impl Clock for SystemClock {
    fn monotonic_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn wall_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    monotonic_ns: Rc<Cell<u64>>,
    wall_ms: Rc<Cell<u64>>,
}

impl ManualClock {
    pub fn new(wall_ms: u64) -> ManualClock {
        let clock = ManualClock::default();
        clock.wall_ms.set(wall_ms);
        clock
    }

    /// Advances both clocks by `ns` nanoseconds.
    pub fn advance_ns(&self, ns: u64) {
        self.monotonic_ns.set(self.monotonic_ns.get() + ns);
        self.wall_ms.set(self.wall_ms.get() + ns / 1_000_000);
    }

    /// Sets the wall clock alone (a clock jump); the monotonic clock is unaffected.
    pub fn set_wall_ms(&self, wall_ms: u64) {
        self.wall_ms.set(wall_ms);
    }
}

impl Clock for ManualClock {
    fn monotonic_ns(&self) -> u64 {
        self.monotonic_ns.get()
    }

    fn wall_ms(&self) -> u64 {
        self.wall_ms.get()
    }
}

/// A shared clock is a clock: the shard and its WAL hold the same one.
impl<T: Clock + ?Sized> Clock for Rc<T> {
    fn monotonic_ns(&self) -> u64 {
        (**self).monotonic_ns()
    }

    fn wall_ms(&self) -> u64 {
        (**self).wall_ms()
    }
}
