//! Least privilege and safety settings, read from `template.yaml`.
//!
//! Every rule is a function from the template to a list of violations, so the same rules run
//! on the real template (no violation allowed) and on mutated copies (each rule must fire):
//! a checker that cannot fail protects nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_yaml::{Mapping, Value};

// ------------------------------------------------------------------------- policy ----

/// What each function may do, exactly: `(action, resource)` with resources written as
/// `Id.Attr` (Fn::GetAtt), `Id` (Ref) or the `Fn::Sub` string.
fn expected_grants() -> BTreeMap<&'static str, Vec<(&'static str, &'static str)>> {
    let catalog = |grants: &mut Vec<(&'static str, &'static str)>| {
        for action in
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query", "dynamodb:BatchGetItem"]
        {
            grants.push((action, "CatalogTable.Arn"));
            grants.push((action, "${CatalogTable.Arn}/index/*"));
        }
    };
    let mut webhook = vec![
        ("sqs:SendMessage", "ChangesQueue.Arn"),
        ("sqs:SendMessage", "LifecycleQueue.Arn"),
        ("secretsmanager:GetSecretValue", "ClientStateKeySecret"),
    ];
    webhook.sort();
    let mut enumerator = vec![
        ("sqs:SendMessage", "ChangesQueue.Arn"),
        ("sqs:SendMessage", "ItemsQueue.Arn"),
        ("sqs:SendMessage", "ItemsLargeQueue.Arn"),
        ("secretsmanager:GetSecretValue", "GraphReaderSecret"),
    ];
    catalog(&mut enumerator);
    let mut copier = vec![
        ("s3:ListBucket", "VaultBucket.Arn"),
        ("sqs:SendMessage", "ItemsQueue.Arn"),
        ("sqs:SendMessage", "ItemsLargeQueue.Arn"),
        ("secretsmanager:GetSecretValue", "GraphReaderSecret"),
    ];
    for action in [
        "s3:PutObject",
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:PutObjectRetention",
        "s3:GetObjectRetention",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts",
    ] {
        copier.push((action, "${VaultBucket.Arn}/*"));
    }
    catalog(&mut copier);
    let mut scheduler = vec![
        ("sqs:SendMessage", "ChangesQueue.Arn"),
        ("secretsmanager:GetSecretValue", "GraphReaderSecret"),
        ("secretsmanager:GetSecretValue", "GraphSubscriberSecret"),
        ("secretsmanager:GetSecretValue", "ClientStateKeySecret"),
    ];
    catalog(&mut scheduler);
    BTreeMap::from([
        ("WebhookFunction", webhook),
        ("EnumeratorFunction", enumerator),
        ("CopierFunction", copier.clone()),
        ("LargeCopierFunction", copier),
        ("SchedulerFunction", scheduler),
    ])
}

/// Actions that would let a role destroy or weaken backups. No function may hold them, and
/// a wildcard that covers one (`s3:*`, `s3:Delete*`, `*`) counts as holding it.
const NEVER_GRANTED: &[&str] = &[
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteBucket",
    "s3:BypassGovernanceRetention",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutObjectLegalHold",
    "s3:PutLifecycleConfiguration",
    "s3:PutBucketPolicy",
    "s3:PutBucketVersioning",
    "dynamodb:DeleteItem",
    "dynamodb:DeleteTable",
    "dynamodb:BatchWriteItem",
];

/// Only these functions may read the subscriber app's credentials.
const SUBSCRIBER_SECRET_READERS: &[&str] = &["SchedulerFunction"];

// ---------------------------------------------------------------------- the model ----

struct Function<'a> {
    id: &'a str,
    properties: &'a Mapping,
}

fn functions(t: &Value) -> Vec<Function<'_>> {
    resources(t)
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .filter_map(|(id, r)| Some(Function { id, properties: r["Properties"].as_mapping()? }))
        .collect()
}

fn resources(t: &Value) -> impl Iterator<Item = (&str, &Value)> {
    t["Resources"].as_mapping().into_iter().flatten().filter_map(|(k, v)| Some((k.as_str()?, v)))
}

fn resource<'a>(t: &'a Value, id: &str) -> &'a Value {
    &t["Resources"][id]
}

fn timeout(t: &Value, f: &Function) -> i64 {
    f.properties.get("Timeout").or_else(|| t["Globals"]["Function"].get("Timeout")).and_then(Value::as_i64).unwrap_or(3) // Lambda's default
}

/// `Id.Attr`, `Id` or the `Fn::Sub` text: how a policy names a resource.
fn resource_name(v: &Value) -> String {
    if let Some(s) = v.as_str() {
        return s.to_owned();
    }
    if let Some(parts) = v["Fn::GetAtt"].as_sequence() {
        let parts: Vec<_> = parts.iter().filter_map(Value::as_str).collect();
        return parts.join(".");
    }
    if let Some(s) = v["Fn::GetAtt"].as_str() {
        return s.to_owned();
    }
    if let Some(s) = v["Ref"].as_str() {
        return s.to_owned();
    }
    if let Some(s) = v["Fn::Sub"].as_str() {
        return s.to_owned();
    }
    format!("<unrecognised {v:?}>")
}

fn one_or_many(v: &Value) -> Vec<&Value> {
    match v {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// Every `(action, resource)` the function's policies allow, or a violation for anything that
/// cannot be reviewed here (managed policies, SAM policy templates, Deny-less conditions...).
fn grants(f: &Function) -> Result<BTreeSet<(String, String)>, String> {
    let mut out = BTreeSet::new();
    let policies = f.properties.get("Policies").map(one_or_many).unwrap_or_default();
    for policy in policies {
        let Some(statements) = policy.get("Statement") else {
            return Err(format!("{}: policy {policy:?} is not an inline document; it cannot be reviewed", f.id));
        };
        for statement in one_or_many(statements) {
            if statement["Effect"].as_str() != Some("Allow") {
                continue;
            }
            if statement.get("NotAction").is_some() || statement.get("NotResource").is_some() {
                return Err(format!("{}: NotAction/NotResource grant everything else", f.id));
            }
            for action in one_or_many(&statement["Action"]) {
                for res in one_or_many(&statement["Resource"]) {
                    let action = action.as_str().unwrap_or("<non-string>").to_owned();
                    out.insert((action, resource_name(res)));
                }
            }
        }
    }
    if f.properties.contains_key("Role") {
        return Err(format!("{}: an external Role cannot be reviewed", f.id));
    }
    Ok(out)
}

/// IAM action matching: case-insensitive, `*` and `?` wildcards.
fn iam_match(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match (p.first(), a.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], a) || (!a.is_empty() && go(p, &a[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &a[1..]),
            (Some(x), Some(y)) if x.eq_ignore_ascii_case(y) => go(&p[1..], &a[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

// -------------------------------------------------------------------------- rules ----

fn exact_grants(t: &Value) -> Vec<String> {
    let expected = expected_grants();
    let mut violations = Vec::new();
    let found: Vec<_> = functions(t).iter().map(|f| f.id.to_owned()).collect();
    for id in expected.keys() {
        if !found.iter().any(|f| f == id) {
            violations.push(format!("{id}: missing from the template"));
        }
    }
    for f in functions(t) {
        let Some(wanted) = expected.get(f.id) else {
            violations.push(format!("{}: no expected grants listed for this function", f.id));
            continue;
        };
        let wanted: BTreeSet<_> = wanted.iter().map(|(a, r)| (a.to_string(), r.to_string())).collect();
        match grants(&f) {
            Err(e) => violations.push(e),
            Ok(got) => {
                for extra in got.difference(&wanted) {
                    violations.push(format!("{}: grants more than it needs: {extra:?}", f.id));
                }
                for missing in wanted.difference(&got) {
                    violations.push(format!("{}: lacks {missing:?}", f.id));
                }
            }
        }
    }
    violations
}

fn no_destructive_actions(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    for f in functions(t) {
        let Ok(got) = grants(&f) else { continue }; // reported by exact_grants
        for (action, resource) in &got {
            if action == "*" || action.eq_ignore_ascii_case("s3:*") {
                violations.push(format!("{}: wildcard action {action} on {resource}", f.id));
            }
            for never in NEVER_GRANTED {
                if iam_match(action, never) {
                    violations.push(format!("{}: {action} on {resource} allows {never}", f.id));
                }
            }
        }
    }
    violations
}

fn subscriber_secret_confined(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    for f in functions(t) {
        let Ok(got) = grants(&f) else { continue };
        let reads = got
            .iter()
            .any(|(a, r)| r.contains("GraphSubscriberSecret") && iam_match(a, "secretsmanager:GetSecretValue"));
        let env_has_it = f
            .properties
            .get("Environment")
            .is_some_and(|e| serde_yaml::to_string(e).is_ok_and(|s| s.contains("GraphSubscriberSecret")));
        if (reads || env_has_it) && !SUBSCRIBER_SECRET_READERS.contains(&f.id) {
            violations.push(format!("{}: can read the subscriber secret", f.id));
        }
    }
    violations
}

fn event_sources_bounded(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    for f in functions(t) {
        let events = f.properties.get("Events").and_then(Value::as_mapping).into_iter().flatten();
        for (name, event) in events {
            if event["Type"].as_str() != Some("SQS") {
                continue;
            }
            let at = format!("{}.{}", f.id, name.as_str().unwrap_or("?"));
            let p = &event["Properties"];
            match p["ScalingConfig"]["MaximumConcurrency"].as_i64() {
                Some(n) if (2..=1000).contains(&n) => {}
                other => violations.push(format!("{at}: ScalingConfig.MaximumConcurrency is {other:?}")),
            }
            let partial =
                one_or_many(&p["FunctionResponseTypes"]).iter().any(|v| v.as_str() == Some("ReportBatchItemFailures"));
            if !partial {
                violations.push(format!("{at}: no ReportBatchItemFailures"));
            }
        }
    }
    violations
}

fn queues_have_dlq_and_timeouts(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let queues: Vec<&str> =
        resources(t).filter(|(_, r)| r["Type"].as_str() == Some("AWS::SQS::Queue")).map(|(id, _)| id).collect();
    let dead_letter_targets: BTreeSet<String> = queues
        .iter()
        .map(|q| resource_name(&resource(t, q)["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]))
        .collect();
    for q in &queues {
        let props = &resource(t, q)["Properties"];
        let is_dlq = dead_letter_targets.contains(&format!("{q}.Arn"));
        if is_dlq {
            let alarmed = resources(t).any(|(_, r)| {
                r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
                    && one_or_many(&r["Properties"]["Dimensions"])
                        .iter()
                        .any(|d| resource_name(&d["Value"]) == format!("{q}.QueueName"))
            });
            if !alarmed {
                violations.push(format!("{q}: dead-letter queue without an alarm"));
            }
            continue;
        }
        let redrive = &props["RedrivePolicy"];
        let target = resource_name(&redrive["deadLetterTargetArn"]);
        let target_id = target.strip_suffix(".Arn").unwrap_or_default();
        if !queues.contains(&target_id) {
            violations.push(format!("{q}: no dead-letter queue (RedrivePolicy target {target})"));
        }
        if !redrive["maxReceiveCount"].as_i64().is_some_and(|n| (1..=10).contains(&n)) {
            violations.push(format!("{q}: maxReceiveCount {:?}", redrive["maxReceiveCount"]));
        }
        let visibility = props["VisibilityTimeout"].as_i64().unwrap_or(30);
        let consumers: Vec<_> = functions(t)
            .into_iter()
            .filter(|f| {
                f.properties.get("Events").and_then(Value::as_mapping).into_iter().flatten().any(|(_, e)| {
                    e["Type"].as_str() == Some("SQS") && resource_name(&e["Properties"]["Queue"]) == format!("{q}.Arn")
                })
            })
            .collect();
        if consumers.is_empty() {
            violations.push(format!("{q}: no consumer"));
        }
        for f in consumers {
            if visibility < 6 * timeout(t, &f) {
                violations.push(format!(
                    "{q}: visibility timeout {visibility}s < 6 x {}'s timeout {}s",
                    f.id,
                    timeout(t, &f)
                ));
            }
        }
    }
    violations
}

fn vault_is_locked(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let vault = resource(t, "VaultBucket");
    let p = &vault["Properties"];
    let check = |ok: bool, what: &str, violations: &mut Vec<String>| {
        if !ok {
            violations.push(format!("VaultBucket: {what}"));
        }
    };
    check(p["ObjectLockEnabled"].as_bool() == Some(true), "ObjectLockEnabled is not true", &mut violations);
    let lock = &p["ObjectLockConfiguration"];
    check(
        lock["ObjectLockEnabled"].as_str() == Some("Enabled"),
        "Object Lock configuration not enabled",
        &mut violations,
    );
    check(!lock["Rule"]["DefaultRetention"]["Mode"].is_null(), "no default retention", &mut violations);
    check(
        p["VersioningConfiguration"]["Status"].as_str() == Some("Enabled"),
        "versioning not Enabled",
        &mut violations,
    );
    for flag in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        check(
            p["PublicAccessBlockConfiguration"][flag].as_bool() == Some(true),
            &format!("public access block {flag} is not true"),
            &mut violations,
        );
    }
    check(vault["DeletionPolicy"].as_str() == Some("Retain"), "DeletionPolicy is not Retain", &mut violations);
    violations
}

fn catalog_is_protected(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let table = resource(t, "CatalogTable");
    let p = &table["Properties"];
    if p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool() != Some(true) {
        violations.push("CatalogTable: point-in-time recovery is off".to_owned());
    }
    if p["DeletionProtectionEnabled"].as_bool() != Some(true) {
        violations.push("CatalogTable: deletion protection is off".to_owned());
    }
    if !p["LocalSecondaryIndexes"].is_null() {
        violations.push("CatalogTable: LSIs cap item collections at 10 GB".to_owned());
    }
    if table["DeletionPolicy"].as_str() != Some("Retain") {
        violations.push("CatalogTable: DeletionPolicy is not Retain".to_owned());
    }
    violations
}

fn violations(t: &Value) -> Vec<String> {
    let rules: &[fn(&Value) -> Vec<String>] = &[
        exact_grants,
        no_destructive_actions,
        subscriber_secret_confined,
        event_sources_bounded,
        queues_have_dlq_and_timeouts,
        vault_is_locked,
        catalog_is_protected,
    ];
    rules.iter().flat_map(|rule| rule(t)).collect()
}

// -------------------------------------------------------------------------- tests ----

fn real_template() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let text = std::fs::read_to_string(&path).expect("template.yaml is readable");
    serde_yaml::from_str(&text).expect("template.yaml parses with a plain YAML parser")
}

/// Runs every rule on `t`; with no `expected`, nothing may be reported, otherwise each
/// expected fragment must appear in some violation.
fn check(t: &Value, expected: &[&str]) {
    let found = violations(t);
    if expected.is_empty() {
        assert!(found.is_empty(), "violations:\n{}", found.join("\n"));
    }
    for fragment in expected {
        assert!(
            found.iter().any(|v| v.contains(fragment)),
            "expected a violation mentioning {fragment:?}, got:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn the_template_grants_each_function_exactly_what_it_needs() {
    check(&real_template(), &[]);
}

fn statements_of<'a>(t: &'a mut Value, function: &str) -> &'a mut Vec<Value> {
    t["Resources"][function]["Properties"]["Policies"][0]["Statement"].as_sequence_mut().expect("inline statements")
}

fn add_statement(t: &mut Value, function: &str, yaml: &str) {
    let statement: Value = serde_yaml::from_str(yaml).expect("statement yaml");
    statements_of(t, function).push(statement);
}

fn set(t: &mut Value, path: &[&str], yaml: &str) {
    let mut at = &mut *t;
    for key in path {
        at = &mut at[*key];
    }
    *at = serde_yaml::from_str(yaml).expect("value yaml");
}

#[test]
fn every_rule_catches_the_mistake_it_exists_for() {
    type Mutation = fn(&mut Value);
    let cases: &[(&str, Mutation, &[&str])] = &[
        (
            "copier gains s3:DeleteObject on the vault",
            |t| {
                add_statement(
                    t,
                    "CopierFunction",
                    r#"{Effect: Allow, Action: [s3:DeleteObject], Resource: [{"Fn::Sub": "${VaultBucket.Arn}/*"}]}"#,
                )
            },
            &["CopierFunction: grants more than it needs", "allows s3:DeleteObject"],
        ),
        (
            "large copier gets s3:* ",
            |t| add_statement(t, "LargeCopierFunction", r#"{Effect: Allow, Action: "s3:*", Resource: "*"}"#),
            &["LargeCopierFunction: wildcard action s3:*", "allows s3:BypassGovernanceRetention"],
        ),
        (
            "copier gets a prefix wildcard that covers legal holds",
            |t| {
                add_statement(
                    t,
                    "CopierFunction",
                    r#"{Effect: Allow, Action: "s3:PutObject*", Resource: {"Fn::Sub": "${VaultBucket.Arn}/*"}}"#,
                )
            },
            &["allows s3:PutObjectLegalHold"],
        ),
        (
            "scheduler may delete catalog rows",
            |t| {
                add_statement(
                    t,
                    "SchedulerFunction",
                    r#"{Effect: Allow, Action: dynamodb:DeleteItem, Resource: {"Fn::GetAtt": [CatalogTable, Arn]}}"#,
                )
            },
            &["allows dynamodb:DeleteItem"],
        ),
        (
            "webhook may send item jobs",
            |t| {
                add_statement(
                    t,
                    "WebhookFunction",
                    r#"{Effect: Allow, Action: sqs:SendMessage, Resource: {"Fn::GetAtt": [ItemsQueue, Arn]}}"#,
                )
            },
            &["WebhookFunction: grants more than it needs: (\"sqs:SendMessage\", \"ItemsQueue.Arn\")"],
        ),
        (
            "enumerator may read the subscriber secret",
            |t| {
                add_statement(
                    t,
                    "EnumeratorFunction",
                    "{Effect: Allow, Action: secretsmanager:GetSecretValue, Resource: {Ref: GraphSubscriberSecret}}",
                )
            },
            &["EnumeratorFunction: can read the subscriber secret"],
        ),
        (
            "a managed policy slips in",
            |t| {
                t["Resources"]["EnumeratorFunction"]["Properties"]["Policies"]
                    .as_sequence_mut()
                    .expect("policies")
                    .push(Value::from("AmazonS3FullAccess"))
            },
            &["EnumeratorFunction: policy", "cannot be reviewed"],
        ),
        (
            "a SAM policy template slips in",
            |t| set(t, &["Resources", "CopierFunction", "Properties", "Policies"], "[{S3CrudPolicy: {BucketName: x}}]"),
            &["CopierFunction: policy"],
        ),
        (
            "copier loses a permission it needs",
            |t| {
                statements_of(t, "CopierFunction").retain(|s| s["Sid"].as_str() != Some("ListVault"));
            },
            &["CopierFunction: lacks (\"s3:ListBucket\""],
        ),
        (
            "an SQS event source without a concurrency cap",
            |t| {
                t["Resources"]["CopierFunction"]["Properties"]["Events"]["Items"]["Properties"]
                    .as_mapping_mut()
                    .expect("props")
                    .remove("ScalingConfig");
            },
            &["CopierFunction.Items: ScalingConfig.MaximumConcurrency"],
        ),
        (
            "an SQS event source without partial batch failures",
            |t| {
                set(
                    t,
                    &[
                        "Resources",
                        "SchedulerFunction",
                        "Properties",
                        "Events",
                        "Lifecycle",
                        "Properties",
                        "FunctionResponseTypes",
                    ],
                    "[]",
                )
            },
            &["SchedulerFunction.Lifecycle: no ReportBatchItemFailures"],
        ),
        (
            "items visibility shorter than six copier timeouts",
            |t| set(t, &["Resources", "ItemsQueue", "Properties", "VisibilityTimeout"], "600"),
            &["ItemsQueue: visibility timeout 600s < 6 x CopierFunction's timeout 300s"],
        ),
        (
            "lifecycle visibility shorter than six scheduler timeouts",
            |t| set(t, &["Resources", "LifecycleQueue", "Properties", "VisibilityTimeout"], "1800"),
            &["LifecycleQueue: visibility timeout"],
        ),
        (
            "a queue without a dead-letter queue",
            |t| {
                t["Resources"]["ItemsLargeQueue"]["Properties"]
                    .as_mapping_mut()
                    .expect("props")
                    .remove("RedrivePolicy");
            },
            &["ItemsLargeQueue: no dead-letter queue"],
        ),
        (
            "a dead-letter queue without an alarm",
            |t| {
                t["Resources"].as_mapping_mut().expect("resources").remove("ItemsDeadLetterAlarm");
            },
            &["ItemsDeadLetterQueue: dead-letter queue without an alarm"],
        ),
        (
            "vault versioning suspended",
            |t| set(t, &["Resources", "VaultBucket", "Properties", "VersioningConfiguration", "Status"], "Suspended"),
            &["VaultBucket: versioning not Enabled"],
        ),
        (
            "vault without Object Lock",
            |t| set(t, &["Resources", "VaultBucket", "Properties", "ObjectLockEnabled"], "false"),
            &["VaultBucket: ObjectLockEnabled is not true"],
        ),
        (
            "vault public access partly allowed",
            |t| {
                set(
                    t,
                    &[
                        "Resources",
                        "VaultBucket",
                        "Properties",
                        "PublicAccessBlockConfiguration",
                        "RestrictPublicBuckets",
                    ],
                    "false",
                )
            },
            &["public access block RestrictPublicBuckets"],
        ),
        (
            "catalog without PITR or deletion protection",
            |t| {
                set(
                    t,
                    &[
                        "Resources",
                        "CatalogTable",
                        "Properties",
                        "PointInTimeRecoverySpecification",
                        "PointInTimeRecoveryEnabled",
                    ],
                    "false",
                );
                set(t, &["Resources", "CatalogTable", "Properties", "DeletionProtectionEnabled"], "false");
            },
            &["point-in-time recovery is off", "deletion protection is off"],
        ),
        (
            "a new function nobody reviewed",
            |t| {
                let copy = t["Resources"]["SchedulerFunction"].clone();
                t["Resources"]["RestorerFunction"] = copy;
            },
            &["RestorerFunction: no expected grants listed"],
        ),
    ];
    for (description, mutate, expected) in cases {
        let mut t = real_template();
        mutate(&mut t);
        eprintln!("case: {description}");
        check(&t, expected);
    }
}

#[test]
fn iam_wildcards_match_like_iam() {
    let check = |pattern: &str, action: &str, expected: bool| {
        assert_eq!(iam_match(pattern, action), expected, "{pattern} vs {action}");
    };
    check("s3:Delete*", "s3:DeleteObjectVersion", true);
    check("s3:*", "s3:BypassGovernanceRetention", true);
    check("*", "dynamodb:DeleteItem", true);
    check("S3:deleteobject", "s3:DeleteObject", true);
    check("s3:PutObject", "s3:PutObjectLegalHold", false);
    check("s3:Put?bjectRetention", "s3:PutObjectRetention", true);
    check("s3:GetObject*", "s3:DeleteObject", false);
}
