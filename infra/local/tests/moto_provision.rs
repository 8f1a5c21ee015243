//! The template provisioned on a real moto server behaves like a vault.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::ObjectLockMode;
use local_stack::moto::{MotoServer, aws_config, s3_client};
use local_stack::provision::{Provisioned, provision};

#[tokio::test]
async fn provisioned_vault_keeps_a_locked_version() -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize()?;
    if !repo.join(".venv/bin/moto_server").exists() {
        // `make test` installs it first; a bare `cargo test` on a fresh clone may not have it.
        println!("skipping: .venv/bin/moto_server not found (run infra/venv.sh)");
        return Ok(());
    }

    // Given the template provisioned on a fresh moto server
    let moto = MotoServer::start(&repo).await?;
    let cfg = aws_config(&moto.endpoint, "us-east-1").await;
    let secret_values = BTreeMap::from([
        ("GraphReaderSecret".to_owned(), "reader-client-secret".to_owned()),
        ("GraphSubscriberSecret".to_owned(), "subscriber-client-secret".to_owned()),
    ]);
    let template = repo.join("template.yaml");
    let stack = provision(&cfg, &template, "bk-it", &secret_values).await?;
    assert_eq!(stack.object_lock_mode, "GOVERNANCE");
    assert_eq!(stack.retention_days, 35);
    assert_eq!(stack.queues.len(), 8, "{:?}", stack.queues.keys());
    assert!(stack.queues["ChangesQueue"].ends_with("bk-it-changes.fifo"));
    assert_eq!(stack.secrets.len(), 3);
    let json = serde_json::to_string(&stack)?;
    assert_eq!(serde_json::from_str::<Provisioned>(&json)?, stack);

    // When the copier's way of writing stores a version with explicit retention
    let s3 = s3_client(&cfg);
    let retain_until = chrono::Utc::now() + chrono::Duration::days(1);
    let put = s3
        .put_object()
        .bucket(&stack.vault_bucket)
        .key("content/sha256/abc")
        .body(ByteStream::from_static(b"backed-up bytes"))
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(DateTime::from_secs(retain_until.timestamp()))
        .send()
        .await?;
    let version = put.version_id().expect("versioned bucket returns a version id");

    // Then the version carries that retention (HeadObject: moto 5.2.5 does not implement
    // GetObjectRetention and answers it with the object's body)
    let head =
        s3.head_object().bucket(&stack.vault_bucket).key("content/sha256/abc").version_id(version).send().await?;
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Governance));
    let until = head.object_lock_retain_until_date().expect("retention date reported");
    assert!((until.secs() - retain_until.timestamp()).abs() <= 1);

    // And deleting that version without bypassing governance is refused
    let deleted =
        s3.delete_object().bucket(&stack.vault_bucket).key("content/sha256/abc").version_id(version).send().await;
    assert!(deleted.is_err(), "a locked version was deleted");
    let body = s3
        .get_object()
        .bucket(&stack.vault_bucket)
        .key("content/sha256/abc")
        .version_id(version)
        .send()
        .await?
        .body
        .collect()
        .await?
        .into_bytes();
    assert_eq!(&body[..], b"backed-up bytes");

    // And an object written without lock headers still gets the default retention
    let plain = s3
        .put_object()
        .bucket(&stack.vault_bucket)
        .key("records/v1/x")
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await?;
    let head = s3
        .head_object()
        .bucket(&stack.vault_bucket)
        .key("records/v1/x")
        .set_version_id(plain.version_id().map(str::to_owned))
        .send()
        .await?;
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Governance));

    // And the catalog cannot be deleted while deletion protection is on
    let ddb = aws_sdk_dynamodb::Client::new(&cfg);
    let dropped = ddb.delete_table().table_name(&stack.catalog_table).send().await;
    assert!(dropped.is_err(), "a protected catalog table was deleted");

    // And provisioning again against the same server converges instead of failing
    let again = provision(&cfg, &template, "bk-it", &secret_values).await?;
    assert_eq!(again, stack);
    Ok(())
}
