//! Sends to SQS in batches: at most 10 entries and 256 KiB per `SendMessageBatch`, several
//! batches at once on a standard queue, retrying the entries that failed through no fault of
//! ours. FIFO queues (URL ending in `.fifo`) get
//! the message's group and a random deduplication id: correctness never relies on SQS
//! deduplication, which moto forgets anyway once a message is deleted.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures::TryStreamExt;

use super::sdk_error;
use crate::backoff::Backoff;
use crate::store::{MessageSink, OutMessage, QueueName, StoreError};

const SERVICE: &str = "sqs";
const MAX_BATCH_ENTRIES: usize = 10;
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// SQS's longest per-message delay.
const MAX_DELAY_SECONDS: u64 = 900;
/// `SendMessageBatch` requests in flight at once on a standard queue.
const BATCHES_IN_FLIGHT: usize = 8;
/// Retries of entries that failed without sender fault, after the first attempt.
const ENTRY_RETRIES: u32 = 3;

/// SQS sink: one URL per logical queue.
#[derive(Clone, Debug)]
pub struct SqsSink {
    client: Client,
    urls: BTreeMap<QueueName, String>,
}

impl SqsSink {
    pub fn new(config: &aws_config::SdkConfig, urls: BTreeMap<QueueName, String>) -> Self {
        Self::from_client(Client::new(config), urls)
    }

    pub fn from_client(client: Client, urls: BTreeMap<QueueName, String>) -> Self {
        Self { client, urls }
    }

    fn entry(id: String, message: &OutMessage, fifo: bool) -> Result<SendMessageBatchRequestEntry, StoreError> {
        let mut entry = SendMessageBatchRequestEntry::builder().id(id).message_body(&message.body);
        if fifo {
            let group = message
                .group_id
                .as_deref()
                .ok_or_else(|| StoreError::Malformed("a message to a FIFO queue needs a group id".to_owned()))?;
            // Per-message delays are not supported on FIFO queues: `delay` is ignored there.
            entry = entry.message_group_id(group).message_deduplication_id(uuid::Uuid::new_v4().simple().to_string());
        } else if let Some(delay) = message.delay {
            let seconds = delay.as_secs().min(MAX_DELAY_SECONDS);
            if seconds > 0 {
                entry = entry.delay_seconds(seconds as i32);
            }
        }
        entry.build().map_err(|e| StoreError::Malformed(format!("SendMessageBatch entry: {e}")))
    }

    /// Sends one batch, re-sending failed entries that were not the sender's fault.
    async fn send_batch(&self, url: &str, mut entries: Vec<SendMessageBatchRequestEntry>) -> Result<(), StoreError> {
        let mut attempt = 0;
        loop {
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries.clone()))
                .send()
                .await
                .map_err(|e| sdk_error(SERVICE, "SendMessageBatch", e))?;
            let failed = out.failed();
            if failed.is_empty() {
                return Ok(());
            }
            if let Some(fault) = failed.iter().find(|f| f.sender_fault()) {
                return Err(StoreError::Service {
                    service: SERVICE,
                    message: format!("SendMessageBatch rejected entry {}: {}", fault.id(), fault.code()),
                    retryable: false,
                });
            }
            if attempt >= ENTRY_RETRIES {
                return Err(StoreError::Service {
                    service: SERVICE,
                    message: format!("SendMessageBatch: {} entries still failing ({})", failed.len(), failed[0].code()),
                    retryable: true,
                });
            }
            let retry: Vec<&str> = failed.iter().map(|f| f.id()).collect();
            entries.retain(|e| retry.contains(&e.id()));
            attempt += 1;
            Backoff::AWS.sleep(attempt).await;
        }
    }
}

#[async_trait]
impl MessageSink for SqsSink {
    async fn send(&self, queue: QueueName, messages: Vec<OutMessage>) -> Result<(), StoreError> {
        let url = self
            .urls
            .get(&queue)
            .ok_or_else(|| StoreError::Malformed(format!("no queue URL configured for {queue:?}")))?;
        let fifo = url.ends_with(".fifo");
        let mut batches = Vec::new();
        let mut batch = Vec::new();
        let mut batch_bytes = 0;
        for (index, message) in messages.iter().enumerate() {
            let size = message.body.len();
            if size > MAX_BATCH_BYTES {
                return Err(StoreError::Malformed(format!("a {queue:?} message of {size} bytes exceeds SQS's limit")));
            }
            if batch.len() == MAX_BATCH_ENTRIES || batch_bytes + size > MAX_BATCH_BYTES {
                batches.push(std::mem::take(&mut batch));
                batch_bytes = 0;
            }
            batch.push(Self::entry(format!("m{index}"), message, fifo)?);
            batch_bytes += size;
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        // A FIFO queue's batches go one after the other, so a group's messages keep their
        // order; a standard queue has no order to keep, and a restore plan's 2,000 batches
        // go several at a time.
        let in_flight = if fifo { 1 } else { BATCHES_IN_FLIGHT };
        futures::stream::iter(batches.into_iter().map(Ok))
            .try_for_each_concurrent(in_flight, |batch| self.send_batch(url, batch))
            .await?;
        Ok(())
    }
}
