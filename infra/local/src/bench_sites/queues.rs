//! The backup's queues played in-process for the SharePoint bench, with the SQS semantics
//! that pacing depends on: a message sent with a delay becomes visible that many **whole**
//! seconds later (the SQS adapter truncates, as `DelaySeconds` is an integer), and the
//! `changes` queue is FIFO per group (one enumeration per container at a time).

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shared::store::memory::MemorySink;
use shared::store::{OutMessage, QueueName};

/// One received message: its body and FIFO group, to give back with [`Queue::done`].
pub(crate) struct Received {
    pub body: String,
    group: Option<String>,
}

#[derive(Default)]
struct State {
    /// Messages by (visible at, arrival), so the earliest visible comes first.
    waiting: BTreeMap<(Instant, u64), (String, Option<String>)>,
    arrivals: u64,
    /// FIFO groups with a message being handled.
    busy_groups: HashSet<String>,
    /// Received and not yet done.
    in_flight: usize,
}

#[derive(Default)]
pub(crate) struct Queue {
    state: Mutex<State>,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn send(&self, message: OutMessage) {
        let delay = Duration::from_secs(message.delay.map_or(0, |d| d.as_secs()));
        let mut s = self.lock();
        s.arrivals += 1;
        let key = (Instant::now() + delay, s.arrivals);
        s.waiting.insert(key, (message.body, message.group_id));
    }

    /// The next visible message whose group is free, waiting for one until `stop`.
    pub(crate) async fn receive(&self, stop: &AtomicBool) -> Option<Received> {
        loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            let now = Instant::now();
            let next_visible = {
                let mut s = self.lock();
                let found = s
                    .waiting
                    .iter()
                    .take_while(|((at, _), _)| *at <= now)
                    .find(|(_, (_, group))| group.as_ref().is_none_or(|g| !s.busy_groups.contains(g)))
                    .map(|(k, _)| *k);
                if let Some(key) = found {
                    let (body, group) = s.waiting.remove(&key).unwrap_or_default();
                    if let Some(g) = &group {
                        s.busy_groups.insert(g.clone());
                    }
                    s.in_flight += 1;
                    return Some(Received { body, group });
                }
                s.waiting.keys().next().map(|(at, _)| *at)
            };
            let nap = next_visible.map_or(Duration::from_millis(5), |at| at.saturating_duration_since(now));
            tokio::time::sleep(nap.clamp(Duration::from_millis(1), Duration::from_millis(5))).await;
        }
    }

    /// Sends a received message back, visible again after `delay` (a failed handler's message
    /// after the visibility timeout).
    pub(crate) fn send_again(&self, received: &Received, delay: Duration) {
        let message = OutMessage { body: received.body.clone(), group_id: received.group.clone(), delay: Some(delay) };
        self.send(message);
    }

    pub(crate) fn done(&self, received: Received) {
        let mut s = self.lock();
        if let Some(g) = received.group {
            s.busy_groups.remove(&g);
        }
        s.in_flight -= 1;
    }

    /// Neither waiting (visible or delayed) nor being handled.
    pub(crate) fn is_empty(&self) -> bool {
        let s = self.lock();
        s.in_flight == 0 && s.waiting.is_empty()
    }
}

/// The `changes` and `items` queues (`items-large` is folded into `items`: the bench's files
/// are small).
#[derive(Default)]
pub(crate) struct Queues {
    pub changes: Queue,
    pub items: Queue,
}

impl Queues {
    /// Moves what the handlers sent (to their sink) into the queues.
    pub(crate) fn pump(&self, sink: &MemorySink) {
        for m in sink.take(QueueName::Changes) {
            self.changes.send(m);
        }
        for queue in [QueueName::Items, QueueName::ItemsLarge] {
            for m in sink.take(queue) {
                self.items.send(m);
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.items.is_empty()
    }
}
