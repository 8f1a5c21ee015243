//! The template provisioned on a real moto server behaves like a vault.

use std::collections::BTreeMap;
use std::path::PathBuf;

use aws_sdk_dynamodb::types::ProjectionType;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::ObjectLockMode;
use aws_sdk_sqs::types::QueueAttributeName;
use local_stack::moto::{MotoServer, aws_config, s3_client};
use local_stack::provision::{Provisioned, provision};

#[tokio::test]
#[ignore = "needs moto: make test"]
async fn provisioned_vault_keeps_a_locked_version() -> anyhow::Result<()> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize()?;

    // Given the template provisioned on a fresh moto server
    let moto = MotoServer::start(&repo).await?;
    let cfg = aws_config(&moto.endpoint, "us-east-1").await;
    let secret_values = BTreeMap::from([
        ("GraphReaderSecret".to_owned(), "reader-client-secret".to_owned()),
        ("GraphSubscriberSecret".to_owned(), "subscriber-client-secret".to_owned()),
        ("GraphRestorerSecret".to_owned(), "restorer-client-secret".to_owned()),
    ]);
    let template = repo.join("template.yaml");
    let stack = provision(&cfg, &template, "bk-it", &secret_values).await?;
    assert_eq!(stack.object_lock_mode, "GOVERNANCE");
    assert_eq!(stack.retention_days, 35);
    assert_eq!(stack.queues.len(), 10, "{:?}", stack.queues.keys());
    assert!(stack.queues["ChangesQueue"].ends_with("bk-it-changes.fifo"));
    assert!(stack.queues["RestoresQueue"].ends_with("bk-it-restores"));
    assert_eq!(stack.secrets.len(), 4, "{:?}", stack.secrets.keys());
    assert!(stack.unfilled_secrets.is_empty(), "{:?}", stack.unfilled_secrets);
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

    // And the catalog has both indexes: a container's items and a folder's children as of T
    let described = ddb.describe_table().table_name(&stack.catalog_table).send().await?;
    let table = described.table().expect("table described");
    let mut indexes: Vec<(String, Vec<String>)> = table
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            let keys = g.key_schema().iter().map(|k| format!("{}:{}", k.attribute_name(), k.key_type())).collect();
            (g.index_name().unwrap_or_default().to_owned(), keys)
        })
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        vec![
            ("GSI1".to_owned(), vec!["G1PK:HASH".to_owned(), "G1SK:RANGE".to_owned()]),
            ("GSI2".to_owned(), vec!["G2PK:HASH".to_owned(), "G2SK:RANGE".to_owned()]),
        ]
    );
    for g in table.global_secondary_indexes() {
        assert_eq!(g.projection().and_then(|p| p.projection_type()), Some(&ProjectionType::All));
    }

    // And the restores queue outlives six restorer timeouts and dead-letters after 5 receives
    let sqs = aws_sdk_sqs::Client::new(&cfg);
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&stack.queues["RestoresQueue"])
        .attribute_names(QueueAttributeName::All)
        .send()
        .await?
        .attributes
        .unwrap_or_default();
    assert_eq!(attrs.get(&QueueAttributeName::VisibilityTimeout).map(String::as_str), Some("5400"));
    let redrive: serde_json::Value =
        serde_json::from_str(attrs.get(&QueueAttributeName::RedrivePolicy).expect("redrive policy"))?;
    assert!(redrive["deadLetterTargetArn"].as_str().is_some_and(|a| a.ends_with(":bk-it-restores-dlq")), "{redrive}");
    assert_eq!(redrive["maxReceiveCount"].to_string().trim_matches('"'), "5");

    // And the restorer's secret holds what was supplied
    let sm = aws_sdk_secretsmanager::Client::new(&cfg);
    let restorer = sm.get_secret_value().secret_id(&stack.secrets["GraphRestorerSecret"]).send().await?;
    assert_eq!(restorer.secret_string(), Some("restorer-client-secret"));

    // And provisioning again against the same server converges instead of failing
    let again = provision(&cfg, &template, "bk-it", &secret_values).await?;
    assert_eq!(again, stack);

    // And a caller that supplies no restorer secret (a stack that runs no restorer) still
    // provisions: the secret exists without a value and is reported, as in AWS before the
    // operator fills it
    let partial: BTreeMap<_, _> = secret_values
        .iter()
        .filter(|(k, _)| *k != "GraphRestorerSecret")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let other = provision(&cfg, &template, "bk-other", &partial).await?;
    assert_eq!(other.unfilled_secrets, vec!["GraphRestorerSecret".to_owned()]);
    let empty = sm.get_secret_value().secret_id(&other.secrets["GraphRestorerSecret"]).send().await;
    assert!(empty.is_err(), "an unfilled secret must not be readable");
    let json = serde_json::to_string(&other)?;
    assert_eq!(serde_json::from_str::<Provisioned>(&json)?, other);
    Ok(())
}
