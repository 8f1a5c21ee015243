//! The one place that knows the SQS event shape: the queue-driven functions turn a Lambda
//! `SqsEvent` into `shared`'s messages and the ids to retry into a partial batch response.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use shared::pipeline::batch::Received;

/// The batch's messages, by SQS message id.
pub fn messages(event: SqsEvent) -> Vec<Received> {
    event
        .records
        .into_iter()
        .map(|r| Received { id: r.message_id.unwrap_or_default(), body: r.body.unwrap_or_default() })
        .collect()
}

/// Partial batch failure: the messages SQS must deliver again.
pub fn batch_response(failed: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}
