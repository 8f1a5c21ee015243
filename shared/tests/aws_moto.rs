//! The real AWS adapters against a real moto server (`.venv/bin/moto_server`, created by
//! `make venv`): Object Lock verification, SQS batching, secrets, and the catalog's error for a
//! missing table. The catalog's behaviour is tested by its contract tests
//! (`src/store/contract/`), on moto and on the fake alike.

#[path = "../src/aws/test_moto.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use bytes::Bytes;
use chrono::{Duration as Days, Utc};
use common::Moto;
use futures::StreamExt;
use shared::aws::{DynamoCatalog, S3Vault, SecretsManagerSource, SqsSink};
use shared::model::{
    ContainerId, ContainerRecord, ContentRef, ItemKind, ItemVersion, ObjectRef, SCHEMA_VERSION, Verification,
};
use shared::store::{
    Containers, ItemHistory, Lock, LockMode, MessageSink, OutMessage, QueueName, SecretSource, StoreError, Vault,
};

const BUCKET: &str = "vault";

fn lock(days: i64) -> Lock {
    Lock { mode: LockMode::Governance, retain_until: Utc::now() + Days::days(days) }
}

async fn locked_bucket(config: &SdkConfig, name: &str, object_lock: bool) -> aws_sdk_s3::Client {
    let s3 = shared::aws::s3_client(config);
    s3.create_bucket().bucket(name).object_lock_enabled_for_bucket(object_lock).send().await.expect("create bucket");
    s3.put_bucket_versioning()
        .bucket(name)
        .versioning_configuration(VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build())
        .send()
        .await
        .expect("enable versioning");
    s3
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn content_is_stored_once_and_cannot_be_deleted() {
    // Given a versioned bucket with Object Lock
    let moto = Moto::start();
    let config = moto.config().await;
    let s3 = locked_bucket(&config, BUCKET, true).await;
    let vault = S3Vault::new(&config, BUCKET);
    let l = lock(30);

    // When the same content is stored twice
    let body = Bytes::from_static(b"quarterly numbers");
    let first = vault.put_if_absent("blobs/ab", body.clone(), &l).await.expect("first put");
    let second = vault.put_if_absent("blobs/ab", Bytes::from_static(b"other"), &l).await.expect("second put");

    // Then it exists once, locked, and deleting that version is refused
    assert!(first.created && !second.created);
    assert_eq!(first.object, second.object);
    assert_eq!(vault.list_versions("blobs/").await.expect("list"), vec![first.object.clone()]);
    assert_eq!(vault.get(&first.object).await.expect("get"), body);
    let info = vault.head(&first.object).await.expect("head").expect("exists");
    assert!(info.satisfies(&l), "{info:?}");
    assert_eq!(info.size, body.len() as u64);
    let delete = s3.delete_object().bucket(BUCKET).key("blobs/ab").version_id(&first.object.version_id).send().await;
    assert!(delete.is_err(), "a locked version was deleted");
    assert_eq!(vault.get(&first.object).await.expect("still there"), body);
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn a_multipart_upload_ends_locked_even_though_moto_ignores_lock_headers() {
    // Given a locked bucket
    let moto = Moto::start();
    let config = moto.config().await;
    let s3 = locked_bucket(&config, BUCKET, true).await;
    let vault = S3Vault::new(&config, BUCKET);
    let l = lock(30);

    // When 12 MiB are uploaded in parts of 5, 5 and 2 MiB
    let body: Vec<u8> = (0..12 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let mut upload = vault.start_multipart("large/x", &l).await.expect("start");
    for (n, chunk) in body.chunks(5 * 1024 * 1024).enumerate() {
        let part = i32::try_from(n + 1).expect("part number");
        vault.upload_part(&mut upload, part, Bytes::copy_from_slice(chunk)).await.expect("part");
    }
    let object = vault.complete_multipart(upload, &l).await.expect("complete");

    // Then HeadObject reports the lock, the version cannot be deleted, and the bytes round-trip
    let head =
        s3.head_object().bucket(BUCKET).key(&object.key).version_id(&object.version_id).send().await.expect("head");
    assert_eq!(head.object_lock_mode().map(|m| m.as_str()), Some("GOVERNANCE"));
    let until = head.object_lock_retain_until_date().expect("retain until");
    assert!(until.secs() >= l.retain_until.timestamp(), "retention shorter than asked");
    let delete = s3.delete_object().bucket(BUCKET).key(&object.key).version_id(&object.version_id).send().await;
    assert!(delete.is_err(), "a locked multipart version was deleted");
    let mut streamed = Vec::new();
    let mut stream = vault.get_stream(&object).await.expect("stream");
    while let Some(chunk) = stream.next().await {
        streamed.extend_from_slice(&chunk.expect("chunk"));
    }
    assert!(streamed == body, "streamed bytes differ");

    // And an aborted upload leaves nothing behind
    let upload = vault.start_multipart("large/y", &l).await.expect("start");
    vault.abort_multipart(upload).await.expect("abort");
    assert!(vault.list_versions("large/y").await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn a_version_whose_retention_cannot_be_set_fails_closed() {
    // Given a versioned bucket without Object Lock and an object stored there directly
    let moto = Moto::start();
    let config = moto.config().await;
    let s3 = locked_bucket(&config, "plain", false).await;
    let out = s3.put_object().bucket("plain").key("k").body(Bytes::from_static(b"x").into()).send().await.expect("put");
    let object = ObjectRef { key: "k".to_owned(), version_id: out.version_id().expect("version").to_owned() };
    let vault = S3Vault::new(&config, "plain");

    // When we ask for it to be locked, or store new content there
    let ensured = vault.ensure_locked(&object, &lock(1)).await;
    let stored = vault.put_if_absent("new", Bytes::from_static(b"y"), &lock(1)).await;

    // Then both fail rather than report an unlocked object as locked
    assert!(ensured.is_err(), "{ensured:?}");
    assert!(stored.is_err(), "{stored:?}");
    let missing = ObjectRef { key: "gone".to_owned(), version_id: object.version_id.clone() };
    assert!(matches!(vault.head(&missing).await, Ok(None)));
    assert!(matches!(vault.get(&missing).await, Err(StoreError::NotFound { .. })));
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn a_missing_catalog_table_is_a_non_retryable_service_error() {
    // The catalog's behaviour is in the contract tests (`shared/src/store/contract/`), run on
    // moto and on the fake alike; this is the adapter's own error mapping.
    let moto = Moto::start();
    let config = moto.config().await;
    let missing = DynamoCatalog::new(&config, "nope");
    let err = missing.head(&ContainerId::new("tenant-1", "b!drive").item("a")).await.expect_err("no table");
    assert!(matches!(err, StoreError::Service { retryable: false, .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn messages_reach_standard_and_fifo_queues_in_batches() {
    let moto = Moto::start();
    let config = moto.config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let items = sqs.create_queue().queue_name("items").send().await.expect("items");
    let changes = sqs
        .create_queue()
        .queue_name("changes.fifo")
        .attributes(QueueAttributeName::FifoQueue, "true")
        .send()
        .await
        .expect("changes");
    let items_url = items.queue_url().expect("url").to_owned();
    let changes_url = changes.queue_url().expect("url").to_owned();
    let sink = SqsSink::new(
        &config,
        BTreeMap::from([(QueueName::Items, items_url.clone()), (QueueName::Changes, changes_url.clone())]),
    );

    // When 25 messages go to each queue, 5 of the standard ones delayed
    let standard: Vec<OutMessage> = (0..25)
        .map(|i| OutMessage {
            body: format!("{{\"n\":{i}}}"),
            group_id: None,
            delay: (i >= 20).then_some(Duration::from_secs(120)),
        })
        .collect();
    let fifo: Vec<OutMessage> = (0..25)
        .map(|i| OutMessage { body: format!("{{\"n\":{i}}}"), group_id: Some(format!("drive.{}", i % 3)), delay: None })
        .collect();
    sink.send(QueueName::Items, standard).await.expect("send items");
    sink.send(QueueName::Changes, fifo).await.expect("send changes");

    // Then the 20 undelayed standard messages are visible now and 5 are delayed
    let received = receive_all(&sqs, &items_url).await;
    assert_eq!(received.len(), 20, "{received:?}");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&items_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("attributes");
    let delayed = attrs.attributes().and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed));
    assert_eq!(delayed.map(String::as_str), Some("5"));

    // And every FIFO message arrives once, in order within its group
    let received = receive_all(&sqs, &changes_url).await;
    assert_eq!(received.len(), 25);
    for group in 0..3 {
        let in_group: Vec<String> = received
            .iter()
            .filter(|(g, _)| g.as_deref() == Some(format!("drive.{group}").as_str()))
            .map(|(_, body)| body.clone())
            .collect();
        let expected: Vec<String> = (0..25).filter(|i| i % 3 == group).map(|i| format!("{{\"n\":{i}}}")).collect();
        assert_eq!(in_group, expected);
    }

    // And a FIFO message without a group is refused before anything is sent
    let orphan = OutMessage { body: "{}".into(), group_id: None, delay: None };
    assert!(sink.send(QueueName::Changes, vec![orphan]).await.is_err());
}

/// Also prints the time (`--nocapture`): on moto, for scale only.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn thousands_of_messages_reach_a_standard_queue_every_one_once() {
    let moto = Moto::start();
    let config = moto.config().await;
    let sqs = aws_sdk_sqs::Client::new(&config);
    let url =
        sqs.create_queue().queue_name("restores").send().await.expect("queue").queue_url().expect("url").to_owned();
    let sink = SqsSink::new(&config, BTreeMap::from([(QueueName::Restores, url.clone())]));

    // When 500 chunk-sized messages (about 2 KB each) are sent at once, as a restore plan does
    // (moto slows with the backlog: a plan's 20,000 would take it many minutes)
    let chunk = "x".repeat(2_000);
    let messages: Vec<OutMessage> = (0..500)
        .map(|i| OutMessage { body: format!("{{\"n\":{i},\"ids\":\"{chunk}\"}}"), group_id: None, delay: None })
        .collect();
    let started = std::time::Instant::now();
    sink.send(QueueName::Restores, messages).await.expect("send");
    println!("500 messages in 50 batches: {:?}", started.elapsed());

    // Then every one is in the queue
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("attributes");
    let queued = attrs.attributes().and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages));
    assert_eq!(queued.map(String::as_str), Some("500"));
}

/// Receives (and deletes) until the queue answers empty: (group id, body) in arrival order.
async fn receive_all(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(Option<String>, String)> {
    let mut all = Vec::new();
    loop {
        let out = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .expect("receive");
        let messages = out.messages();
        if messages.is_empty() {
            return all;
        }
        for m in messages {
            let group = m.attributes().and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId)).cloned();
            all.push((group, m.body().unwrap_or_default().to_owned()));
            sqs.delete_message()
                .queue_url(url)
                .receipt_handle(m.receipt_handle().expect("receipt"))
                .send()
                .await
                .expect("delete");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn secrets_are_read_by_name_and_missing_ones_are_not_found() {
    let moto = Moto::start();
    let config = moto.config().await;
    let created = aws_sdk_secretsmanager::Client::new(&config)
        .create_secret()
        .name("graph-reader")
        .secret_string("s3cr3t-value")
        .send()
        .await
        .expect("create secret");
    let source = SecretsManagerSource::new(&config);
    assert_eq!(source.secret("graph-reader").await.expect("by name"), "s3cr3t-value");
    assert_eq!(source.secret(created.arn().expect("arn")).await.expect("by arn"), "s3cr3t-value");
    let err = source.secret("absent").await.expect_err("missing");
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs moto: make test"]
async fn verify_finds_a_governance_lock_made_to_lapse() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectLockRetention, ObjectLockRetentionMode};
    use sha2::{Digest, Sha256};
    use shared::pipeline::keeper::KeeperDeps;
    use shared::pipeline::retention::Policy;

    // Given a locked vault and the catalog on moto, with two files of one drive backed up as
    // the copier writes them (content, record, both locked as a new version is, then the row)
    let moto = Moto::start();
    let config = moto.config().await;
    let s3 = locked_bucket(&config, BUCKET, true).await;
    common::catalog_table(&config).await;
    let catalog = std::sync::Arc::new(DynamoCatalog::new(&config, common::TABLE));
    let vault = std::sync::Arc::new(S3Vault::new(&config, BUCKET));
    let policy = Policy::new(LockMode::Governance, 35);
    let drive = ContainerId::new("tenant-1", "b!drive");
    catalog
        .put_container(&ContainerRecord {
            container: drive.clone(),
            user_id: "u".into(),
            user_principal_name: None,
            discovered_at: Utc::now(),
            subscription_id: None,
            subscription_expires: None,
            problem: None,
            site: None,
        })
        .await
        .expect("register");
    let mut contents = BTreeMap::new();
    for (item, body) in [("a", &b"alpha"[..]), ("b", &b"bravo"[..])] {
        let now = Utc::now();
        let lock = policy.new_version(now);
        let sha256 = hex::encode(Sha256::digest(body));
        let content = vault
            .put_if_absent(&shared::keys::blob_key("tenant-1", &sha256), Bytes::copy_from_slice(body), &lock)
            .await
            .expect("content")
            .object;
        let version = ItemVersion {
            created: None,
            v: SCHEMA_VERSION,
            key: drive.item(item),
            version: format!("{item}-1"),
            kind: ItemKind::File,
            name: Some(format!("{item}.txt")),
            parent_id: Some("root".into()),
            ctag: None,
            modified: now,
            captured_at: now,
            deleted: false,
            content: Some(ContentRef {
                object: content.clone(),
                size: body.len() as u64,
                sha256,
                quick_xor_hash: None,
            }),
            verification: Verification::Sha256,
            mail: None,
            observed_at: None,
            current_from: None,
            note: None,
        };
        let record_key = shared::keys::record_key(&version.key, &version.row_id());
        let json = serde_json::to_vec(&version).expect("json");
        let record = vault.put_if_absent(&record_key, Bytes::from(json), &lock).await.expect("record").object;
        catalog.commit_version(&version, &record).await.expect("commit");
        contents.insert(item, content);
    }

    // When b's content lock is shortened to tomorrow by a raw PutObjectRetention (moto lets
    // GOVERNANCE be shortened without the bypass header; S3 would ask for it)
    let tomorrow = Utc::now() + Days::days(1);
    let lapsed = &contents["b"];
    s3.put_object_retention()
        .bucket(BUCKET)
        .key(&lapsed.key)
        .version_id(&lapsed.version_id)
        .retention(
            ObjectLockRetention::builder()
                .mode(ObjectLockRetentionMode::Governance)
                .retain_until_date(aws_sdk_s3::primitives::DateTime::from_secs(tomorrow.timestamp()))
                .build(),
        )
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .send()
        .await
        .expect("shorten the lock");

    // And a full verification runs
    let deps = KeeperDeps {
        catalog: catalog.clone(),
        vault: vault.clone(),
        clock: shared::clock::system(),
        policy,
        tenant_id: "tenant-1".into(),
        concurrency: 4,
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let run = shared::pipeline::verify::verify(&deps, true, false, deadline).await.expect("verify");

    // Then the run finished and reports that object lock_short, and only it
    let report = &run.report;
    assert!(run.finished_at.is_some());
    assert_eq!((report.versions, report.objects, report.hashed), (2, 4, 4));
    assert_eq!((report.lock_short, report.missing, report.altered), (1, 0, 0), "{:?}", report.problems);
    let problem = &report.problems[0];
    assert_eq!((problem.item_id.as_str(), &problem.key, &problem.version_id), ("b", &lapsed.key, &lapsed.version_id));
    assert!(problem.problem.starts_with("lock short"), "{}", problem.problem);
    let earliest = report.earliest_lock_end.expect("an earliest lock end");
    assert_eq!(earliest.timestamp(), tomorrow.timestamp());
}
