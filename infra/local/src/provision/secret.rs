//! `AWS::SecretsManager::Secret` on moto, with a value generated like CloudFormation would
//! (`GetRandomPassword` with the declared rules) or supplied by the caller. A secret the
//! template leaves for the operator and the caller does not supply is created without a value,
//! as it is in AWS between deploy and `put-secret-value`: loading it fails until someone fills it.

use std::collections::BTreeMap;

use anyhow::{Context, ensure};
use aws_sdk_secretsmanager::Client;

use super::sdk_error;
use super::template::{Props, Resolver, Resource};

pub(super) const KNOWN: &[&str] = &["Name", "Description", "GenerateSecretString", "SecretString"];

const GENERATE_RULES: &[&str] = &[
    "PasswordLength",
    "ExcludeCharacters",
    "ExcludeNumbers",
    "ExcludePunctuation",
    "ExcludeUppercase",
    "ExcludeLowercase",
    "IncludeSpace",
    "RequireEachIncludedType",
];

pub(super) struct CreatedSecret {
    pub arn: String,
    /// False for an operator-filled secret that nobody supplied (it has no value yet).
    pub filled: bool,
}

pub(super) async fn create(
    sm: &Client,
    resolver: &Resolver,
    resource: &Resource,
    supplied: &BTreeMap<String, String>,
) -> anyhow::Result<CreatedSecret> {
    let props = resolver.properties(resource)?;
    let p = Props::new(&resource.logical_id, &props);
    p.only(KNOWN)?;
    let name = resolver.physical_name(resource, "Name")?;

    let value = if let Some(value) = supplied.get(&resource.logical_id) {
        value.clone()
    } else if let Some(rules) = p.map("GenerateSecretString")? {
        generate(sm, &Props::new(p.at(), &rules)).await?
    } else if let Some(value) = p.str("SecretString")? {
        value
    } else {
        // In AWS the operator fills it after deploy. Locally the caller fills the ones the
        // functions it runs need; the rest stay empty (and are reported) rather than getting a
        // made-up value that would fail far from the cause.
        return create_unfilled(sm, &name, p.str("Description")?).await;
    };

    let created =
        sm.create_secret().name(&name).set_description(p.str("Description")?).secret_string(&value).send().await;
    let arn = match created {
        Ok(out) => out.arn,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_exists_exception()) => {
            sm.put_secret_value()
                .secret_id(&name)
                .secret_string(&value)
                .send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("updating secret {name}"))?
                .arn
        }
        Err(err) => return Err(sdk_error(err)).with_context(|| format!("creating secret {name}")),
    }
    .with_context(|| format!("{name}: no ARN returned"))?;

    let stored = sm
        .get_secret_value()
        .secret_id(&arn)
        .send()
        .await
        .map_err(sdk_error)
        .with_context(|| format!("reading back secret {name}"))?;
    // Compared, never printed: the value is a secret even locally.
    ensure!(stored.secret_string() == Some(value.as_str()), "{name}: stored value differs from the one written");
    Ok(CreatedSecret { arn, filled: true })
}

/// Creates (or finds) the secret without a value and checks that reading it fails, as it does
/// in AWS before the operator fills it. A value left by an earlier run is kept, not erased.
async fn create_unfilled(sm: &Client, name: &str, description: Option<String>) -> anyhow::Result<CreatedSecret> {
    let created = sm.create_secret().name(name).set_description(description).send().await;
    let arn = match created {
        Ok(out) => out.arn,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_exists_exception()) => {
            sm.describe_secret()
                .secret_id(name)
                .send()
                .await
                .map_err(sdk_error)
                .with_context(|| format!("describing secret {name}"))?
                .arn
        }
        Err(err) => return Err(sdk_error(err)).with_context(|| format!("creating secret {name}")),
    }
    .with_context(|| format!("{name}: no ARN returned"))?;
    let filled = sm.get_secret_value().secret_id(&arn).send().await.is_ok_and(|v| v.secret_string().is_some());
    if filled {
        tracing::info!(secret = %name, "operator-filled secret already has a value; kept");
    } else {
        tracing::warn!(secret = %name, "operator-filled secret created without a value; whatever loads it will fail");
    }
    Ok(CreatedSecret { arn, filled })
}

async fn generate(sm: &Client, rules: &Props<'_>) -> anyhow::Result<String> {
    rules.only(GENERATE_RULES)?;
    let password = sm
        .get_random_password()
        .set_password_length(rules.int("PasswordLength")?)
        .set_exclude_characters(rules.str("ExcludeCharacters")?)
        .set_exclude_numbers(rules.bool("ExcludeNumbers")?)
        .set_exclude_punctuation(rules.bool("ExcludePunctuation")?)
        .set_exclude_uppercase(rules.bool("ExcludeUppercase")?)
        .set_exclude_lowercase(rules.bool("ExcludeLowercase")?)
        .set_include_space(rules.bool("IncludeSpace")?)
        .set_require_each_included_type(rules.bool("RequireEachIncludedType")?)
        .send()
        .await
        .map_err(sdk_error)
        .context("generating a secret value")?
        .random_password
        .context("GetRandomPassword returned nothing")?;
    if let Some(length) = rules.int("PasswordLength")? {
        ensure!(
            i64::try_from(password.chars().count()) == Ok(length),
            "{}: generated value has the wrong length",
            rules.at()
        );
    }
    if rules.bool("ExcludePunctuation")? == Some(true) {
        ensure!(
            password.chars().all(|c| c.is_ascii_alphanumeric()),
            "{}: generated value contains punctuation",
            rules.at()
        );
    }
    Ok(password)
}
