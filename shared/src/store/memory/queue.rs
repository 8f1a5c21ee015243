//! Queues in memory, with SQS's FIFO rule.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::{bump, injected, locked, take_fault};
use crate::store::{MessageSink, OutMessage, QueueName, StoreError};

/// Records messages per queue. `changes` is FIFO: its messages need a group id.
#[derive(Default)]
pub struct MemorySink {
    queues: Mutex<BTreeMap<QueueName, Vec<OutMessage>>>,
    fail_sends: Mutex<u32>,
    sends: AtomicU64,
}

impl MemorySink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Removes and returns everything sent to `queue`, oldest first.
    pub fn take(&self, queue: QueueName) -> Vec<OutMessage> {
        locked(&self.queues).remove(&queue).unwrap_or_default()
    }

    /// Everything sent to `queue` and not yet taken.
    pub fn messages(&self, queue: QueueName) -> Vec<OutMessage> {
        locked(&self.queues).get(&queue).cloned().unwrap_or_default()
    }

    /// The next `n` `send` calls fail with a retryable error, sending nothing.
    pub fn fail_next_sends(&self, n: u32) {
        *locked(&self.fail_sends) = n;
    }

    /// `send` calls, including failed ones.
    pub fn send_count(&self) -> u64 {
        self.sends.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl MessageSink for MemorySink {
    async fn send(&self, queue: QueueName, messages: Vec<OutMessage>) -> Result<(), StoreError> {
        bump(&self.sends);
        if take_fault(&mut locked(&self.fail_sends)) {
            return Err(injected("sqs"));
        }
        if queue == QueueName::Changes && messages.iter().any(|m| m.group_id.is_none()) {
            return Err(StoreError::Malformed("a message to a FIFO queue needs a group id".to_owned()));
        }
        locked(&self.queues).entry(queue).or_default().extend(messages);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fifo_messages_need_a_group() {
        let sink = MemorySink::new();
        let msg = OutMessage { body: "{}".to_owned(), group_id: None, delay: None };
        assert!(sink.send(QueueName::Changes, vec![msg.clone()]).await.is_err());
        sink.send(QueueName::Items, vec![msg.clone()]).await.expect("standard");
        assert_eq!(sink.take(QueueName::Items), vec![msg]);
        assert!(sink.take(QueueName::Items).is_empty());
    }
}
