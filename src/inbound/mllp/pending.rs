//! Messages received and not yet answered: the `careflow_interface_in_flight` and
//! `careflow_interface_oldest_unacked_seconds` gauges.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::operations::metrics;

const INTERFACE: &str = "mllp";

/// The set of unanswered messages by arrival.
#[derive(Default)]
pub struct Pending {
    inner: Mutex<(u64, BTreeMap<u64, Instant>)>,
}

/// One unanswered message; dropping it (answered, or its connection gone) removes it.
pub struct Waiting {
    pending: Arc<Pending>,
    id: u64,
}

impl Pending {
    pub fn enter(self: &Arc<Self>) -> Waiting {
        let id = match self.inner.lock() {
            Ok(mut inner) => {
                let id = inner.0;
                inner.0 += 1;
                inner.1.insert(id, Instant::now());
                id
            }
            Err(_) => u64::MAX,
        };
        self.publish();
        Waiting {
            pending: Arc::clone(self),
            id,
        }
    }

    /// Sets both gauges (also called every second, as the oldest age grows by itself).
    pub fn publish(&self) {
        let (count, oldest) = match self.inner.lock() {
            Ok(inner) => (
                inner.1.len(),
                inner
                    .1
                    .first_key_value()
                    .map_or(Duration::ZERO, |(_, at)| at.elapsed()),
            ),
            Err(_) => return,
        };
        metrics::interface_pending(INTERFACE, count, oldest);
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(mut inner) = self.pending.inner.lock() {
            inner.1.remove(&self.id);
        }
        self.pending.publish();
    }
}
