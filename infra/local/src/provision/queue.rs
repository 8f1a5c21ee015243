//! `AWS::SQS::Queue` on moto. CloudFormation's queue properties are SQS attribute names, so
//! they map one to one; each is read back except those moto does not store.

use std::collections::HashMap;

use anyhow::{Context, bail};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use serde_yaml::Value;

use super::sdk_error;
use super::template::{Props, Resolver, Resource, to_json};

/// Properties passed through as queue attributes.
pub(super) const ATTRIBUTES: &[&str] = &[
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "RedriveAllowPolicy",
    "RedrivePolicy",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
];

/// Accepted by moto 5.2.5 at creation but neither stored nor reported (GetQueueAttributes
/// even rejects the name). The real service enforces it; locally it cannot be verified.
const NOT_STORED_BY_MOTO: &[&str] = &["RedriveAllowPolicy"];

pub(super) struct CreatedQueue {
    pub url: String,
    pub arn: String,
    pub name: String,
}

/// Whether the queue sends its failures to another queue (so that one must exist first).
pub(super) fn has_dead_letter_target(resource: &Resource) -> bool {
    resource.properties.contains_key("RedrivePolicy")
}

pub(super) async fn create(sqs: &Client, resolver: &Resolver, resource: &Resource) -> anyhow::Result<CreatedQueue> {
    let props = resolver.properties(resource)?;
    let p = Props::new(&resource.logical_id, &props);
    let mut known = ATTRIBUTES.to_vec();
    known.push("QueueName");
    p.only(&known)?;
    let name = resolver.physical_name(resource, "QueueName")?;
    if p.bool("FifoQueue")? == Some(true) && !name.ends_with(".fifo") {
        bail!("{}: FIFO queue name {name} must end in .fifo", p.at());
    }

    let mut wanted = HashMap::new();
    for key in p.keys().filter(|k| ATTRIBUTES.contains(k)) {
        let value = p.raw(key).context("property vanished")?;
        wanted.insert(key.to_owned(), attribute_value(value));
    }
    let url = sqs
        .create_queue()
        .queue_name(&name)
        .set_attributes(Some(wanted.iter().map(|(k, v)| (QueueAttributeName::from(k.as_str()), v.clone())).collect()))
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("creating queue {name}"))?
        .queue_url
        .with_context(|| format!("{name}: CreateQueue returned no URL"))?;

    let got = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .map_err(sdk_error)?
        .attributes
        .unwrap_or_default();
    let got: HashMap<&str, &str> = got.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for (key, want) in &wanted {
        match got.get(key.as_str()) {
            Some(have) if same_attribute(have, want) => {}
            Some(have) => bail!("{name}: {key} is {have}, template wants {want}"),
            None if NOT_STORED_BY_MOTO.contains(&key.as_str()) => {
                tracing::info!(queue = %name, attribute = %key, "moto does not store this attribute; not verified");
            }
            None => bail!("{name}: {key} was not applied (template wants {want})"),
        }
    }
    let arn = got.get("QueueArn").with_context(|| format!("{name}: no QueueArn"))?.to_string();
    Ok(CreatedQueue { url, arn, name })
}

/// SQS takes every attribute as a string; policies are JSON documents.
fn attribute_value(value: &Value) -> String {
    match value {
        Value::Mapping(_) | Value::Sequence(_) => to_json(value).to_string(),
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        Value::Tagged(t) => attribute_value(&t.value),
    }
}

/// Equal as SQS means it: JSON policies compare as documents (`5` and `"5"` alike).
fn same_attribute(have: &str, want: &str) -> bool {
    if have == want {
        return true;
    }
    match (serde_json::from_str::<serde_json::Value>(have), serde_json::from_str::<serde_json::Value>(want)) {
        (Ok(h), Ok(w)) if h.is_object() => stringify(&h) == stringify(&w),
        _ => false,
    }
}

fn stringify(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), stringify(v))).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(stringify).collect()),
        serde_json::Value::Number(n) => serde_json::Value::String(n.to_string()),
        serde_json::Value::Bool(b) => serde_json::Value::String(b.to_string()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies_compare_as_documents() {
        assert!(same_attribute(
            r#"{"deadLetterTargetArn": "arn:x", "maxReceiveCount": 5}"#,
            r#"{"maxReceiveCount":"5","deadLetterTargetArn":"arn:x"}"#
        ));
        assert!(!same_attribute(
            r#"{"deadLetterTargetArn": "arn:x", "maxReceiveCount": 5}"#,
            r#"{"deadLetterTargetArn":"arn:y","maxReceiveCount":5}"#
        ));
        assert!(!same_attribute("1800", "30"));
    }
}
