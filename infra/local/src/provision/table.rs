//! `AWS::DynamoDB::Table` on moto: keys, indexes, billing and protection as declared, read back.

use anyhow::{Context, ensure};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, PointInTimeRecoveryStatus, Projection, ProjectionType, ScalarAttributeType,
    SseSpecification, TimeToLiveSpecification,
};
use serde_yaml::Mapping;

use super::sdk_error;
use super::template::{Props, Resolver, Resource};

pub(super) const KNOWN: &[&str] = &[
    "TableName",
    "BillingMode",
    "AttributeDefinitions",
    "KeySchema",
    "GlobalSecondaryIndexes",
    "PointInTimeRecoverySpecification",
    "DeletionProtectionEnabled",
    "SSESpecification",
    "TimeToLiveSpecification",
];

pub(super) struct CreatedTable {
    pub name: String,
    pub arn: String,
}

pub(super) async fn create(ddb: &Client, resolver: &Resolver, resource: &Resource) -> anyhow::Result<CreatedTable> {
    let props = resolver.properties(resource)?;
    let p = Props::new(&resource.logical_id, &props);
    p.only(KNOWN)?;
    let name = resolver.physical_name(resource, "TableName")?;

    let attributes = p
        .list("AttributeDefinitions")?
        .iter()
        .map(|a| {
            let a = Props::new(p.at(), a);
            a.only(&["AttributeName", "AttributeType"])?;
            Ok(AttributeDefinition::builder()
                .attribute_name(a.req_str("AttributeName")?)
                .attribute_type(ScalarAttributeType::from(a.req_str("AttributeType")?.as_str()))
                .build()?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let table_keys = key_schema(&p, &p.list("KeySchema")?)?;
    let mut indexes = Vec::new();
    for gsi in p.list("GlobalSecondaryIndexes")? {
        let g = Props::new(p.at(), &gsi);
        g.only(&["IndexName", "KeySchema", "Projection"])?;
        let projection = g.map("Projection")?.with_context(|| format!("{}: GSI without Projection", p.at()))?;
        let pr = Props::new(p.at(), &projection);
        pr.only(&["ProjectionType", "NonKeyAttributes"])?;
        let non_key = match pr.raw("NonKeyAttributes") {
            Some(serde_yaml::Value::Sequence(names)) => {
                Some(names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect())
            }
            _ => None,
        };
        indexes.push(
            GlobalSecondaryIndex::builder()
                .index_name(g.req_str("IndexName")?)
                .set_key_schema(Some(key_schema(&g, &g.list("KeySchema")?)?))
                .projection(
                    Projection::builder()
                        .set_projection_type(pr.str("ProjectionType")?.map(|t| ProjectionType::from(t.as_str())))
                        .set_non_key_attributes(non_key)
                        .build(),
                )
                .build()?,
        );
    }
    let billing = p.str("BillingMode")?;
    let deletion_protection = p.bool("DeletionProtectionEnabled")?;
    let sse = match p.map("SSESpecification")? {
        Some(m) => {
            let s = Props::new(p.at(), &m);
            s.only(&["SSEEnabled"])?;
            s.bool("SSEEnabled")?
        }
        None => None,
    };

    let created = ddb
        .create_table()
        .table_name(&name)
        .set_attribute_definitions(Some(attributes.clone()))
        .set_key_schema(Some(table_keys.clone()))
        .set_global_secondary_indexes((!indexes.is_empty()).then(|| indexes.clone()))
        .set_billing_mode(billing.as_deref().map(BillingMode::from))
        .set_deletion_protection_enabled(deletion_protection)
        .set_sse_specification(sse.map(|on| SseSpecification::builder().enabled(on).build()))
        .send()
        .await;
    if let Err(err) = created {
        let exists = err.as_service_error().is_some_and(|e| e.is_resource_in_use_exception());
        if !exists {
            return Err(sdk_error(err)).with_context(|| format!("creating table {name}"));
        }
    }

    let pitr = match p.map("PointInTimeRecoverySpecification")? {
        Some(m) => {
            let s = Props::new(p.at(), &m);
            s.only(&["PointInTimeRecoveryEnabled"])?;
            s.bool("PointInTimeRecoveryEnabled")?
        }
        None => None,
    };
    if let Some(enabled) = pitr {
        ddb.update_continuous_backups()
            .table_name(&name)
            .point_in_time_recovery_specification(
                PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(enabled).build()?,
            )
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("{name}: point-in-time recovery"))?;
    }
    let ttl = ttl(&p)?;
    if let Some((attribute, enabled)) = &ttl {
        ddb.update_time_to_live()
            .table_name(&name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().attribute_name(attribute).enabled(*enabled).build()?,
            )
            .send()
            .await
            .map_err(sdk_error)
            .with_context(|| format!("{name}: time to live"))?;
    }

    // Read back what matters for the catalog's access patterns and its protection.
    let described = ddb.describe_table().table_name(&name).send().await.map_err(sdk_error)?;
    let table = described.table().with_context(|| format!("{name}: DescribeTable returned no table"))?;
    ensure!(
        table.key_schema() == table_keys.as_slice(),
        "{name}: key schema is {:?}, template wants {table_keys:?}",
        table.key_schema()
    );
    for wanted in &indexes {
        let got = table.global_secondary_indexes().iter().find(|g| g.index_name() == Some(wanted.index_name()));
        ensure!(
            got.is_some_and(|g| g.key_schema() == wanted.key_schema()
                && g.projection().and_then(|p| p.projection_type())
                    == wanted.projection().and_then(|p| p.projection_type())),
            "{name}: index {:?} missing or different (got {got:?})",
            wanted.index_name()
        );
    }
    if let Some(billing) = &billing {
        let got = table.billing_mode_summary().and_then(|b| b.billing_mode()).map(|b| b.as_str());
        ensure!(got == Some(billing.as_str()), "{name}: billing mode is {got:?}, template wants {billing}");
    }
    if let Some(wanted) = deletion_protection {
        ensure!(
            table.deletion_protection_enabled() == Some(wanted),
            "{name}: deletion protection is {:?}, template wants {wanted}",
            table.deletion_protection_enabled()
        );
    }
    if pitr == Some(true) {
        // moto 5.2.5 reports continuous backups; should a version stop doing so, the local
        // stack still works, it just cannot prove PITR, so that is a warning, not a failure.
        match ddb.describe_continuous_backups().table_name(&name).send().await {
            Ok(out) => {
                let status = out
                    .continuous_backups_description()
                    .and_then(|d| d.point_in_time_recovery_description())
                    .and_then(|d| d.point_in_time_recovery_status());
                ensure!(
                    status == Some(&PointInTimeRecoveryStatus::Enabled),
                    "{name}: point-in-time recovery is {status:?} after enabling it"
                );
            }
            Err(err) => tracing::warn!(
                table = %name,
                error = %sdk_error(err),
                "moto cannot report point-in-time recovery; not verified"
            ),
        }
    }

    let arn = table.table_arn().with_context(|| format!("{name}: no table ARN"))?.to_owned();
    Ok(CreatedTable { name, arn })
}

fn key_schema(p: &Props, elements: &[Mapping]) -> anyhow::Result<Vec<KeySchemaElement>> {
    elements
        .iter()
        .map(|k| {
            let k = Props::new(p.at(), k);
            k.only(&["AttributeName", "KeyType"])?;
            Ok(KeySchemaElement::builder()
                .attribute_name(k.req_str("AttributeName")?)
                .key_type(KeyType::from(k.req_str("KeyType")?.as_str()))
                .build()?)
        })
        .collect()
}

fn ttl(p: &Props) -> anyhow::Result<Option<(String, bool)>> {
    let Some(m) = p.map("TimeToLiveSpecification")? else {
        return Ok(None);
    };
    let t = Props::new(p.at(), &m);
    t.only(&["AttributeName", "Enabled"])?;
    Ok(Some((t.req_str("AttributeName")?, t.bool("Enabled")?.unwrap_or(false))))
}
