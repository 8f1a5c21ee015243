//! Creates the stateful resources of `template.yaml` (buckets, tables, queues, secrets) on
//! moto with the AWS SDK, then reads back every property that protects data.
//!
//! Why not moto's CloudFormation: it creates buckets, tables and queues from a SAM template
//! but silently drops versioning and Object Lock, so a local vault would not be a vault.
//! Here every declared property is either applied and verified or rejected loudly
//! ([`template::TemplateError::UnsupportedProperty`]), so template and local stack cannot drift.

mod bucket;
mod queue;
mod secret;
mod table;
pub mod template;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use aws_config::SdkConfig;
use serde::{Deserialize, Serialize};

use crate::moto;
use template::{Resolver, Template};

/// moto's default account, which the static test credentials map to. Needed up front because
/// the template builds ARNs from `${AWS::AccountId}` before any resource exists.
pub const MOTO_ACCOUNT_ID: &str = "123456789012";

/// Logical ids the pipeline depends on.
pub const VAULT_BUCKET: &str = "VaultBucket";
pub const EXPORTS_BUCKET: &str = "ExportsBucket";
pub const CATALOG_TABLE: &str = "CatalogTable";

/// What was created, by logical id, for `.local/stack.json`, the runner and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    pub vault_bucket: String,
    /// Export zips (no Object Lock, expired by lifecycle).
    #[serde(default)]
    pub exports_bucket: String,
    pub catalog_table: String,
    /// Logical id (e.g. `ChangesQueue`) → queue URL.
    pub queues: BTreeMap<String, String>,
    /// Logical id (e.g. `GraphReaderSecret`) → secret ARN.
    pub secrets: BTreeMap<String, String>,
    /// Operator-filled secrets nobody supplied a value for: they exist without a value, so a
    /// function that loads one fails at start-up, as it would in AWS before the operator fills it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unfilled_secrets: Vec<String>,
    /// The vault's default retention, from the template's parameter defaults.
    pub object_lock_mode: String,
    pub retention_days: i32,
}

/// Creates and verifies every bucket, table, queue and secret of `template`.
///
/// `secret_values` maps a secret's logical id to its value; it fills secrets the template
/// leaves for the operator (the Graph client secrets) and overrides generated ones. An
/// operator-filled secret missing from it is created without a value and listed in
/// [`Provisioned::unfilled_secrets`].
pub async fn provision(
    cfg: &SdkConfig,
    template: &Path,
    stack_name: &str,
    secret_values: &BTreeMap<String, String>,
) -> anyhow::Result<Provisioned> {
    let template = Template::load(template).with_context(|| format!("loading {}", template.display()))?;
    let region = cfg.region().map(|r| r.as_ref().to_owned()).unwrap_or_else(|| "us-east-1".to_owned());
    check_supported(&template)?;
    let mut resolver = Resolver::new(&template, stack_name, &region, MOTO_ACCOUNT_ID);

    let s3 = moto::s3_client(cfg);
    let mut vault = None;
    let mut exports_bucket = None;
    for resource in template.of_kind("AWS::S3::Bucket") {
        let created = bucket::create(&s3, &resolver, resource, &region, cfg.endpoint_url())
            .await
            .with_context(|| format!("provisioning {}", resource.logical_id))?;
        resolver.record_ref(&resource.logical_id, &created.name);
        resolver.record_attribute(&resource.logical_id, "Arn", format!("arn:aws:s3:::{}", created.name));
        if resource.logical_id == EXPORTS_BUCKET {
            exports_bucket = Some(created.name.clone());
        }
        if resource.logical_id == VAULT_BUCKET {
            vault = Some(created);
        }
        tracing::info!(logical_id = %resource.logical_id, "bucket provisioned");
    }
    let vault = vault.with_context(|| format!("template has no {VAULT_BUCKET}"))?;
    let exports_bucket = exports_bucket.with_context(|| format!("template has no {EXPORTS_BUCKET}"))?;
    let (object_lock_mode, retention_days) =
        vault.default_retention.with_context(|| format!("{VAULT_BUCKET} declares no Object Lock default retention"))?;

    let ddb = aws_sdk_dynamodb::Client::new(cfg);
    let mut catalog_table = None;
    for resource in template.of_kind("AWS::DynamoDB::Table") {
        let created = table::create(&ddb, &resolver, resource)
            .await
            .with_context(|| format!("provisioning {}", resource.logical_id))?;
        resolver.record_ref(&resource.logical_id, &created.name);
        resolver.record_attribute(&resource.logical_id, "Arn", &created.arn);
        if resource.logical_id == CATALOG_TABLE {
            catalog_table = Some(created.name);
        }
        tracing::info!(logical_id = %resource.logical_id, "table provisioned");
    }
    let catalog_table = catalog_table.with_context(|| format!("template has no {CATALOG_TABLE}"))?;

    // Dead-letter queues first: a queue's RedrivePolicy needs its DLQ's ARN.
    let sqs = aws_sdk_sqs::Client::new(cfg);
    let mut queues_in_order: Vec<_> = template.of_kind("AWS::SQS::Queue").collect();
    queues_in_order.sort_by_key(|r| queue::has_dead_letter_target(r));
    let mut queues = BTreeMap::new();
    for resource in queues_in_order {
        let created = queue::create(&sqs, &resolver, resource)
            .await
            .with_context(|| format!("provisioning {}", resource.logical_id))?;
        resolver.record_ref(&resource.logical_id, &created.url);
        resolver.record_attribute(&resource.logical_id, "Arn", &created.arn);
        resolver.record_attribute(&resource.logical_id, "QueueName", &created.name);
        resolver.record_attribute(&resource.logical_id, "QueueUrl", &created.url);
        queues.insert(resource.logical_id.clone(), created.url);
        tracing::info!(logical_id = %resource.logical_id, "queue provisioned");
    }

    let sm = aws_sdk_secretsmanager::Client::new(cfg);
    let mut secrets = BTreeMap::new();
    let mut unfilled_secrets = Vec::new();
    for resource in template.of_kind("AWS::SecretsManager::Secret") {
        let created = secret::create(&sm, &resolver, resource, secret_values)
            .await
            .with_context(|| format!("provisioning {}", resource.logical_id))?;
        resolver.record_ref(&resource.logical_id, &created.arn);
        secrets.insert(resource.logical_id.clone(), created.arn);
        if !created.filled {
            unfilled_secrets.push(resource.logical_id.clone());
        }
        tracing::info!(logical_id = %resource.logical_id, "secret provisioned");
    }

    Ok(Provisioned {
        vault_bucket: vault.name,
        exports_bucket,
        catalog_table,
        queues,
        secrets,
        unfilled_secrets,
        object_lock_mode,
        retention_days,
    })
}

/// Refuses, before creating anything, a template that declares a property the local stack
/// would not apply (nested settings are checked as each resource is applied).
fn check_supported(template: &Template) -> Result<(), template::TemplateError> {
    let queue_known: Vec<&str> = queue::ATTRIBUTES.iter().copied().chain(["QueueName"]).collect();
    let kinds: [(&str, &[&str]); 4] = [
        ("AWS::S3::Bucket", bucket::KNOWN),
        ("AWS::DynamoDB::Table", table::KNOWN),
        ("AWS::SQS::Queue", &queue_known),
        ("AWS::SecretsManager::Secret", secret::KNOWN),
    ];
    for (kind, known) in kinds {
        for resource in template.of_kind(kind) {
            template::Props::new(&resource.logical_id, &resource.properties).only(known)?;
        }
    }
    Ok(())
}

/// SDK errors print as "service error" alone; this keeps the code and message.
fn sdk_error<E>(err: E) -> anyhow::Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    anyhow::anyhow!("{}", aws_sdk_s3::error::DisplayErrorContext(&err))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use serde_yaml::{Mapping, Value};

    use super::template::{Props, Resolver, Template, TemplateError};

    fn repo_template() -> Template {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        Template::load(&path).expect("template.yaml parses")
    }

    fn resolved(resolver: &Resolver, template: &Template, id: &str) -> Mapping {
        let resource = template.resource(id).expect("resource exists");
        resolver.properties(resource).expect("properties resolve")
    }

    #[test]
    fn vault_lock_comes_from_parameter_defaults() {
        // Given the real template and no parameter overrides
        let template = repo_template();
        let resolver = Resolver::new(&template, "bk", "us-east-1", "123456789012");
        // When the vault's properties are resolved
        let props = resolved(&resolver, &template, "VaultBucket");
        let retention = &props["ObjectLockConfiguration"]["Rule"]["DefaultRetention"];
        // Then Object Lock uses the documented evaluation defaults
        assert_eq!(retention["Mode"], Value::from("GOVERNANCE"));
        assert_eq!(Props::new("r", retention.as_mapping().expect("map")).int("Days").ok(), Some(Some(35)));
        assert_eq!(props["ObjectLockEnabled"], Value::from(true));
    }

    #[test]
    fn names_are_declared_or_deterministic() {
        let template = repo_template();
        let resolver = Resolver::new(&template, "bk", "us-east-1", "123456789012");
        let check = |id: &str, property: &str, expected: &str| {
            let resource = template.resource(id).expect("resource exists");
            let name = resolver.physical_name(resource, property).expect("name resolves");
            assert_eq!(name, expected, "{id}");
        };
        check("ChangesQueue", "QueueName", "bk-changes.fifo");
        check("ChangesDeadLetterQueue", "QueueName", "bk-changes-dlq.fifo");
        check("ItemsQueue", "QueueName", "bk-items");
        check("RestoresQueue", "QueueName", "bk-restores");
        check("RestoresDeadLetterQueue", "QueueName", "bk-restores-dlq");
        check("GraphRestorerSecret", "Name", "bk-graphrestorersecret");
        check("CatalogTable", "TableName", "bk-catalogtable");
        check("VaultBucket", "BucketName", "bk-vaultbucket");
        check("ClientStateKeySecret", "Name", "bk-clientstatekeysecret");
    }

    #[test]
    fn redrive_policy_needs_its_dead_letter_queue_first() {
        let template = repo_template();
        let mut resolver = Resolver::new(&template, "bk", "eu-west-1", "123456789012");
        let changes = template.resource("ChangesQueue").expect("exists");
        // Given the DLQ does not exist yet, resolution fails naming it
        let err = resolver.properties(changes).expect_err("DLQ not created yet");
        assert!(
            matches!(&err, TemplateError::Unresolved { name, .. } if name == "ChangesDeadLetterQueue.Arn"),
            "{err}"
        );
        // When the DLQ has been created, the policy points at its ARN
        resolver.record_attribute("ChangesDeadLetterQueue", "Arn", "arn:dlq");
        let props = resolved(&resolver, &template, "ChangesQueue");
        assert_eq!(props["RedrivePolicy"]["deadLetterTargetArn"], Value::from("arn:dlq"));
        assert_eq!(props["RedrivePolicy"]["maxReceiveCount"], Value::from(5));
        // And the DLQ's allow policy names the source queue through pseudo parameters
        let dlq = resolved(&resolver, &template, "ChangesDeadLetterQueue");
        assert_eq!(
            dlq["RedriveAllowPolicy"]["sourceQueueArns"][0],
            Value::from("arn:aws:sqs:eu-west-1:123456789012:bk-changes.fifo")
        );
    }

    #[test]
    fn catalog_declares_the_item_and_folder_children_indexes() {
        // Given the real template's catalog
        let template = repo_template();
        let resolver = Resolver::new(&template, "bk", "us-east-1", "123456789012");
        let props = resolved(&resolver, &template, "CatalogTable");
        // Then both GSIs are declared on string keys, projecting everything, and there is no LSI
        let defined: Vec<(String, String)> = props["AttributeDefinitions"]
            .as_sequence()
            .expect("attribute definitions")
            .iter()
            .map(|a| {
                (
                    a["AttributeName"].as_str().unwrap_or_default().to_owned(),
                    a["AttributeType"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let indexes = props["GlobalSecondaryIndexes"].as_sequence().expect("GSIs");
        for (name, hash, range) in [("GSI1", "G1PK", "G1SK"), ("GSI2", "G2PK", "G2SK")] {
            let gsi =
                indexes.iter().find(|g| g["IndexName"].as_str() == Some(name)).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(gsi["KeySchema"][0]["AttributeName"], Value::from(hash), "{name}");
            assert_eq!(gsi["KeySchema"][0]["KeyType"], Value::from("HASH"), "{name}");
            assert_eq!(gsi["KeySchema"][1]["AttributeName"], Value::from(range), "{name}");
            assert_eq!(gsi["KeySchema"][1]["KeyType"], Value::from("RANGE"), "{name}");
            assert_eq!(gsi["Projection"]["ProjectionType"], Value::from("ALL"), "{name}");
            for key in [hash, range] {
                assert!(defined.contains(&(key.to_owned(), "S".to_owned())), "{key} is not a string attribute");
            }
        }
        assert!(props.get("LocalSecondaryIndexes").is_none());
    }

    #[test]
    fn restores_queue_redrives_to_its_dead_letter_queue() {
        let template = repo_template();
        let mut resolver = Resolver::new(&template, "bk", "eu-west-1", "123456789012");
        resolver.record_attribute("RestoresDeadLetterQueue", "Arn", "arn:restores-dlq");
        let props = resolved(&resolver, &template, "RestoresQueue");
        assert_eq!(props["RedrivePolicy"]["deadLetterTargetArn"], Value::from("arn:restores-dlq"));
        assert_eq!(props["RedrivePolicy"]["maxReceiveCount"], Value::from(5));
        // 6 x the restorer's 900 s timeout
        assert_eq!(props["VisibilityTimeout"], Value::from(5400));
        assert!(props.get("FifoQueue").is_none(), "restores is a standard queue");
        let dlq = resolved(&resolver, &template, "RestoresDeadLetterQueue");
        assert_eq!(
            dlq["RedriveAllowPolicy"]["sourceQueueArns"][0],
            Value::from("arn:aws:sqs:eu-west-1:123456789012:bk-restores")
        );
    }

    #[test]
    fn every_stateful_resource_resolves_once_dependencies_exist() {
        let template = repo_template();
        let mut resolver = Resolver::new(&template, "bk", "us-east-1", "123456789012");
        for kind in ["AWS::SQS::Queue"] {
            for r in template.of_kind(kind) {
                resolver.record_attribute(&r.logical_id, "Arn", format!("arn:{}", r.logical_id));
            }
        }
        for kind in ["AWS::S3::Bucket", "AWS::DynamoDB::Table", "AWS::SQS::Queue", "AWS::SecretsManager::Secret"] {
            let found: Vec<_> = template.of_kind(kind).collect();
            assert!(!found.is_empty(), "template has no {kind}");
            for r in found {
                resolver.properties(r).unwrap_or_else(|e| panic!("{}: {e}", r.logical_id));
            }
        }
    }

    #[test]
    fn sub_handles_attributes_literals_and_variables() {
        let template =
            Template::from_yaml("Parameters: {P: {Type: String, Default: pv}}\nResources: {}\n").expect("parses");
        let mut resolver = Resolver::new(&template, "st", "us-east-1", "1");
        resolver.record_attribute("B", "Arn", "arn:b");
        let check = |yaml: &str, expected: &str| {
            let value: Value = serde_yaml::from_str(yaml).expect("yaml");
            let got = resolver.resolve(&value).expect("resolves").expect("has value");
            assert_eq!(got, Value::from(expected), "{yaml}");
        };
        check(r#"{"Fn::Sub": "${B.Arn}/*"}"#, "arn:b/*");
        check(r#"{"Fn::Sub": "${AWS::StackName}-${P}"}"#, "st-pv");
        check(r#"{"Fn::Sub": "${!Literal}"}"#, "${Literal}");
        check(r#"{"Fn::Sub": ["x-${V}", {V: {Ref: P}}]}"#, "x-pv");
        check(r#"{"Fn::GetAtt": [B, Arn]}"#, "arn:b");
        check(r#"{"Fn::GetAtt": "B.Arn"}"#, "arn:b");
    }

    #[test]
    fn no_value_removes_the_key_and_unknown_intrinsics_fail() {
        let template = Template::from_yaml("Resources: {}\n").expect("parses");
        let resolver = Resolver::new(&template, "st", "us-east-1", "1");
        let value: Value = serde_yaml::from_str("{A: {Ref: AWS::NoValue}, B: 1}").expect("yaml");
        let got = resolver.resolve(&value).expect("resolves").expect("value");
        assert_eq!(got, serde_yaml::from_str::<Value>("{B: 1}").expect("yaml"));
        let value: Value = serde_yaml::from_str(r#"{"Fn::ImportValue": x}"#).expect("yaml");
        assert!(matches!(resolver.resolve(&value), Err(TemplateError::UnsupportedIntrinsic { .. })));
        let value: Value = serde_yaml::from_str("!Ref X").expect("yaml");
        assert!(resolver.resolve(&value).is_err(), "short-form tags are rejected");
    }

    #[test]
    fn undeclared_property_is_refused_before_anything_is_created() {
        // Given the real template, every declared property is one the local stack applies
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let text = std::fs::read_to_string(path).expect("read");
        let template = Template::from_yaml(&text).expect("parses");
        super::check_supported(&template).expect("real template is fully supported");
        // When a copy gives the vault a property the local stack does not apply
        let mut doc: Value = serde_yaml::from_str(&text).expect("yaml");
        doc["Resources"]["VaultBucket"]["Properties"]["ReplicationConfiguration"] =
            serde_yaml::from_str("{Role: r, Rules: []}").expect("yaml");
        let template = Template::from_yaml(&serde_yaml::to_string(&doc).expect("yaml")).expect("parses");
        // Then provisioning is refused, naming the property
        let err = super::check_supported(&template).expect_err("unsupported");
        assert!(err.to_string().contains("ReplicationConfiguration"), "{err}");
    }
}
