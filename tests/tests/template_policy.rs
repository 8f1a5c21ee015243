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
        ("sqs:SendMessage", "LifecycleQueue.Arn"),
        ("secretsmanager:GetSecretValue", "GraphReaderSecret"),
        ("secretsmanager:GetSecretValue", "GraphSubscriberSecret"),
        ("secretsmanager:GetSecretValue", "ClientStateKeySecret"),
    ];
    catalog(&mut scheduler);
    // Reads versions by the S3 version id the catalog names, writes to Microsoft 365, and
    // writes export zips (multipart) without being able to read or delete them.
    let mut restorer = vec![
        ("s3:GetObject", "${VaultBucket.Arn}/*"),
        ("s3:GetObjectVersion", "${VaultBucket.Arn}/*"),
        ("s3:PutObject", "${ExportsBucket.Arn}/*"),
        ("s3:AbortMultipartUpload", "${ExportsBucket.Arn}/*"),
        ("sqs:SendMessage", "RestoresQueue.Arn"),
        ("secretsmanager:GetSecretValue", "GraphRestorerSecret"),
    ];
    catalog(&mut restorer);
    // Presigned downloads carry the role's permissions, hence the reads; no secret at all.
    let mut restore_api = vec![
        ("s3:GetObject", "${VaultBucket.Arn}/*"),
        ("s3:GetObjectVersion", "${VaultBucket.Arn}/*"),
        ("s3:GetObject", "${ExportsBucket.Arn}/*"),
        ("sqs:SendMessage", "RestoresQueue.Arn"),
    ];
    catalog(&mut restore_api);
    // Reads objects and their locks, and lengthens locks: never creates, deletes or unlocks.
    let mut keeper = vec![("s3:ListBucket", "VaultBucket.Arn")];
    for action in ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:PutObjectRetention"] {
        keeper.push((action, "${VaultBucket.Arn}/*"));
    }
    for action in ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"] {
        keeper.push((action, "CatalogTable.Arn"));
        keeper.push((action, "${CatalogTable.Arn}/index/*"));
    }
    BTreeMap::from([
        ("WebhookFunction", webhook),
        ("EnumeratorFunction", enumerator),
        ("CopierFunction", copier.clone()),
        ("LargeCopierFunction", copier),
        ("SchedulerFunction", scheduler),
        ("KeeperFunction", keeper),
        ("RestorerFunction", restorer),
        ("RestoreApiFunction", restore_api),
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

/// Secrets that only the listed functions may read, by grant or by having them in their
/// environment: the subscriber app can create subscriptions, the restorer app can write to
/// Microsoft 365.
const CONFINED_SECRETS: &[(&str, &[&str])] =
    &[("GraphSubscriberSecret", &["SchedulerFunction"]), ("GraphRestorerSecret", &["RestorerFunction"])];

/// Functions that hold no secret at all.
const SECRETLESS: &[&str] = &["RestoreApiFunction"];

/// Functions that only read the vault: restoring or downloading never changes a backup.
const VAULT_READ_ONLY: &[&str] = &["RestorerFunction", "RestoreApiFunction"];

/// S3 actions that write, delete or re-lock objects, checked against wildcards; any
/// `s3:Put*`, `s3:Delete*` or `s3:Bypass*` action counts as well.
const VAULT_WRITES: &[&str] = &[
    "s3:PutObject",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:PutObjectAcl",
    "s3:PutObjectTagging",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:BypassGovernanceRetention",
    "s3:AbortMultipartUpload",
    "s3:RestoreObject",
    "s3:ReplicateObject",
];

/// Functions that set the retention of vault objects: the copier (new objects, deletions)
/// and the keeper (current versions, ahead of time). Each must keep `s3:PutObjectRetention`.
const VAULT_LOCKERS: &[&str] = &["CopierFunction", "LargeCopierFunction", "KeeperFunction"];

/// Functions that may lengthen locks on the vault and nothing else that changes it.
const VAULT_LOCK_ONLY: &[&str] = &["KeeperFunction"];

/// Every action that deletes an object or a part of one; `s3:DeleteObject*` in any form.
const OBJECT_DELETES: &[&str] =
    &["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"];

/// HTTP routes `(function, method, path)` reachable without AWS credentials: Graph must reach
/// the webhook, which authenticates each notification by its clientState instead.
const PUBLIC_ROUTES: &[(&str, &str, &str)] = &[("WebhookFunction", "POST", "/graph/notifications")];

/// HTTP routes that must exist and require SigV4 (IAM): browsing backups and starting restores.
const IAM_ROUTES: &[(&str, &str, &str)] =
    &[("RestoreApiFunction", "ANY", "/"), ("RestoreApiFunction", "ANY", "/{proxy+}")];

/// API Gateway HTTP APIs give up on an integration after 30 s.
const HTTP_TIMEOUT_LIMIT: i64 = 29;

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

/// The function's environment as text, to look for resource names in it.
fn environment_text(f: &Function) -> String {
    f.properties.get("Environment").and_then(|e| serde_yaml::to_string(e).ok()).unwrap_or_default()
}

/// Whether a grant lets the function read `secret`: named, or covered by a wildcard resource.
fn reads_secret(action: &str, resource: &str, secret: &str) -> bool {
    iam_match(action, "secretsmanager:GetSecretValue") && (resource.contains(secret) || resource.contains('*'))
}

fn secrets_confined(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    for f in functions(t) {
        let Ok(got) = grants(&f) else { continue };
        let env = environment_text(&f);
        for (secret, readers) in CONFINED_SECRETS {
            let reads = got.iter().any(|(a, r)| reads_secret(a, r, secret));
            if (reads || env.contains(secret)) && !readers.contains(&f.id) {
                violations.push(format!("{}: can read {secret}", f.id));
            }
        }
    }
    violations
}

fn secretless_functions_hold_no_secret(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let secrets: Vec<&str> = resources(t)
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::SecretsManager::Secret"))
        .map(|(id, _)| id)
        .collect();
    for f in functions(t).into_iter().filter(|f| SECRETLESS.contains(&f.id)) {
        let Ok(got) = grants(&f) else { continue };
        for (action, resource) in &got {
            if iam_match(action, "secretsmanager:GetSecretValue")
                || action.to_ascii_lowercase().starts_with("secretsmanager:")
            {
                violations.push(format!("{}: reads secrets ({action} on {resource})", f.id));
            }
        }
        let env = environment_text(&f);
        for secret in secrets.iter().filter(|s| env.contains(*s)) {
            violations.push(format!("{}: has {secret} in its environment", f.id));
        }
        if env.contains("SECRET") {
            violations.push(format!("{}: has a secret setting in its environment", f.id));
        }
    }
    violations
}

/// Whether a grant's resource can name vault objects: the vault itself or a wildcard.
fn on_vault(resource: &str) -> bool {
    resource.contains("VaultBucket") || resource == "*" || resource.starts_with("arn:aws:s3:::*")
}

fn restore_only_reads_the_vault(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    for f in functions(t).into_iter().filter(|f| VAULT_READ_ONLY.contains(&f.id)) {
        let Ok(got) = grants(&f) else { continue };
        // Writing export zips is the restorer's job; the exports bucket is not the vault.
        for (action, resource) in got.iter().filter(|(_, r)| on_vault(r)) {
            let lower = action.to_ascii_lowercase();
            if ["s3:put", "s3:delete", "s3:bypass"].iter().any(|p| lower.starts_with(p)) {
                violations.push(format!("{}: {action} on {resource} writes to the vault", f.id));
                continue;
            }
            for write in VAULT_WRITES {
                if iam_match(action, write) {
                    violations.push(format!("{}: {action} on {resource} allows {write}", f.id));
                }
            }
        }
    }
    violations
}

/// No function may delete an object, by name, by a wildcard that covers a delete, or by any
/// other `s3:DeleteObject*` action.
fn no_object_deletes(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    for f in functions(t) {
        let Ok(got) = grants(&f) else { continue };
        for (action, resource) in &got {
            let named = action.to_ascii_lowercase().starts_with("s3:deleteobject");
            if named || OBJECT_DELETES.iter().any(|delete| iam_match(action, delete)) {
                violations.push(format!("{}: {action} on {resource} deletes objects", f.id));
            }
        }
    }
    violations
}

/// The functions that lock vault objects can still do it.
fn lockers_can_lock(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    for f in functions(t).into_iter().filter(|f| VAULT_LOCKERS.contains(&f.id)) {
        let Ok(got) = grants(&f) else { continue };
        let locks = got.iter().any(|(a, r)| a == "s3:PutObjectRetention" && r == "${VaultBucket.Arn}/*");
        if !locks {
            violations.push(format!("{}: cannot set the retention of vault objects", f.id));
        }
    }
    violations
}

/// The keeper reads the vault and lengthens locks: no other write, delete, bypass, legal hold
/// or bucket setting, however spelt.
fn keeper_only_locks(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    for f in functions(t).into_iter().filter(|f| VAULT_LOCK_ONLY.contains(&f.id)) {
        let Ok(got) = grants(&f) else { continue };
        for (action, resource) in got.iter().filter(|(_, r)| r.contains("VaultBucket") || r.contains('*')) {
            let lower = action.to_ascii_lowercase();
            if lower == "s3:putobjectretention" {
                continue;
            }
            if ["s3:put", "s3:delete", "s3:bypass"].iter().any(|p| lower.starts_with(p)) {
                violations.push(format!("{}: {action} on {resource} does more than lock", f.id));
                continue;
            }
            let covered = VAULT_WRITES.iter().chain(["s3:PutBucketVersioning", "s3:PutBucketPolicy"].iter());
            for write in covered.filter(|w| **w != "s3:PutObjectRetention") {
                if iam_match(action, write) {
                    violations.push(format!("{}: {action} on {resource} allows {write}", f.id));
                }
            }
        }
    }
    violations
}

/// How an HTTP route is authorized: `Some("AWS_IAM")`, another authorizer, or `None` (public).
fn route_authorizer(t: &Value, event: &Value) -> Result<Option<String>, String> {
    let p = &event["Properties"];
    let api = &p["ApiId"];
    let (default, iam_enabled) = if api.is_null() {
        // SAM's implicit API has no authorizer unless Globals give one; ours never does.
        (None, false)
    } else {
        let id = resource_name(api);
        let declared = resource(t, &id);
        if declared["Type"].as_str() != Some("AWS::Serverless::HttpApi") {
            return Err(format!("ApiId {id} is not an AWS::Serverless::HttpApi of this template"));
        }
        let auth = &declared["Properties"]["Auth"];
        (auth["DefaultAuthorizer"].as_str().map(str::to_owned), auth["EnableIamAuthorizer"].as_bool() == Some(true))
    };
    let effective = match p["Auth"]["Authorizer"].as_str() {
        Some("NONE") => None,
        Some(other) => Some(other.to_owned()),
        None => default,
    };
    // SAM refuses AWS_IAM without EnableIamAuthorizer; treat it as not authorized.
    Ok(effective.filter(|a| a != "AWS_IAM" || iam_enabled))
}

fn http_routes_authorized(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for f in functions(t) {
        if let Some(url) = f.properties.get("FunctionUrlConfig")
            && url["AuthType"].as_str() != Some("AWS_IAM")
        {
            violations.push(format!("{}: function URL without IAM auth", f.id));
        }
        let events = f.properties.get("Events").and_then(Value::as_mapping).into_iter().flatten();
        for (name, event) in events {
            let at = format!("{}.{}", f.id, name.as_str().unwrap_or("?"));
            match event["Type"].as_str() {
                Some("Api") => {
                    violations.push(format!("{at}: REST API events are not reviewed here; use an HttpApi"));
                    continue;
                }
                Some("HttpApi") => {}
                _ => continue,
            }
            let method = event["Properties"]["Method"].as_str().unwrap_or("ANY").to_ascii_uppercase();
            let path = event["Properties"]["Path"].as_str().unwrap_or("$default").to_owned();
            let route = (f.id, method.as_str(), path.as_str());
            seen.insert((f.id.to_owned(), method.clone(), path.clone()));
            let authorizer = match route_authorizer(t, event) {
                Ok(a) => a,
                Err(e) => {
                    violations.push(format!("{at}: {e}"));
                    continue;
                }
            };
            if PUBLIC_ROUTES.contains(&route) {
                if let Some(a) = authorizer {
                    violations.push(format!("{at}: {method} {path} must stay public (Graph cannot sign), has {a}"));
                }
            } else if authorizer.as_deref() != Some("AWS_IAM") {
                violations.push(format!("{at}: {method} {path} is not IAM-authorized (authorizer {authorizer:?})"));
            }
        }
    }
    for (function, method, path) in PUBLIC_ROUTES.iter().chain(IAM_ROUTES) {
        if !seen.contains(&(function.to_string(), method.to_string(), path.to_string())) {
            violations.push(format!("{function}: route {method} {path} is missing"));
        }
    }
    violations
}

fn http_functions_answer_in_time(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    for f in functions(t) {
        let http = f
            .properties
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .any(|(_, e)| matches!(e["Type"].as_str(), Some("HttpApi" | "Api")));
        if http && timeout(t, &f) > HTTP_TIMEOUT_LIMIT {
            violations.push(format!(
                "{}: timeout {}s outlives API Gateway's {HTTP_TIMEOUT_LIMIT}s integration limit",
                f.id,
                timeout(t, &f)
            ));
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

/// Exports are temporary copies: private, encrypted, TLS-only, expired, never locked.
fn exports_are_temporary_and_private(t: &Value) -> Vec<String> {
    let mut violations = Vec::new();
    let bucket = resource(t, "ExportsBucket");
    let p = &bucket["Properties"];
    let mut check = |ok: bool, what: &str| {
        if !ok {
            violations.push(format!("ExportsBucket: {what}"));
        }
    };
    check(!bucket.is_null(), "missing");
    check(p["ObjectLockEnabled"].as_bool() != Some(true), "Object Lock on temporary copies");
    for flag in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"] {
        check(p["PublicAccessBlockConfiguration"][flag].as_bool() == Some(true), &format!("{flag} is not true"));
    }
    let sse = &p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"];
    check(!sse["SSEAlgorithm"].is_null(), "no default encryption");
    let rules = p["LifecycleConfiguration"]["Rules"].as_sequence().cloned().unwrap_or_default();
    let expires = rules.iter().any(|r| {
        r["Status"].as_str() == Some("Enabled") && r["ExpirationInDays"].as_i64().is_some_and(|d| (1..=30).contains(&d))
    });
    check(expires, "no lifecycle rule expires exports within 30 days");
    let tls_only = resources(t).any(|(_, r)| {
        r["Type"].as_str() == Some("AWS::S3::BucketPolicy")
            && r["Properties"]["Bucket"]["Ref"].as_str() == Some("ExportsBucket")
            && one_or_many(&r["Properties"]["PolicyDocument"]["Statement"]).iter().any(|s| {
                s["Effect"].as_str() == Some("Deny")
                    && s["Condition"]["Bool"]["aws:SecureTransport"].as_str() == Some("false")
            })
    });
    check(tls_only, "no bucket policy denies plain HTTP");
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

/// Every count the functions emit for a human to look at has an alarm on it, and a single
/// count fires it (a sum of at least one in its period).
fn emitted_metrics_alarmed(t: &Value) -> Vec<String> {
    let fires_on_one = |p: &Value| {
        let threshold = p["Threshold"].as_f64().or_else(|| p["Threshold"].as_str().and_then(|s| s.parse().ok()));
        p["Statistic"].as_str() == Some("Sum")
            && match p["ComparisonOperator"].as_str() {
                Some("GreaterThanOrEqualToThreshold") => threshold.is_some_and(|t| t <= 1.0),
                Some("GreaterThanThreshold") => threshold.is_some_and(|t| t < 1.0),
                _ => false,
            }
    };
    let mut found = Vec::new();
    for name in shared::metrics::ALARMED {
        let alarms: Vec<&Value> = resources(t)
            .filter(|(_, r)| {
                r["Type"].as_str() == Some("AWS::CloudWatch::Alarm")
                    && r["Properties"]["Namespace"].as_str() == Some(shared::metrics::NAMESPACE)
                    && r["Properties"]["MetricName"].as_str() == Some(name)
            })
            .map(|(_, r)| &r["Properties"])
            .collect();
        if alarms.is_empty() {
            found.push(format!("metric {name}: emitted without an alarm"));
        } else if !alarms.iter().any(|p| fires_on_one(p)) {
            found.push(format!("metric {name}: no alarm fires on a single count"));
        }
    }
    found
}

fn violations(t: &Value) -> Vec<String> {
    let rules: &[fn(&Value) -> Vec<String>] = &[
        exact_grants,
        no_destructive_actions,
        secrets_confined,
        secretless_functions_hold_no_secret,
        restore_only_reads_the_vault,
        no_object_deletes,
        lockers_can_lock,
        keeper_only_locks,
        http_routes_authorized,
        http_functions_answer_in_time,
        event_sources_bounded,
        queues_have_dlq_and_timeouts,
        vault_is_locked,
        exports_are_temporary_and_private,
        catalog_is_protected,
        emitted_metrics_alarmed,
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
            &["EnumeratorFunction: can read GraphSubscriberSecret"],
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
                t["Resources"]["ExporterFunction"] = copy;
            },
            &["ExporterFunction: no expected grants listed"],
        ),
        // ---------------------------------------------------------------- restore ----
        (
            "restorer may delete exports (or anything)",
            |t| {
                add_statement(
                    t,
                    "RestorerFunction",
                    r#"{Effect: Allow, Action: s3:DeleteObject, Resource: {"Fn::Sub": "${ExportsBucket.Arn}/*"}}"#,
                )
            },
            &["RestorerFunction: grants more than it needs", "allows s3:DeleteObject"],
        ),
        (
            "restorer may read exports",
            |t| {
                add_statement(
                    t,
                    "RestorerFunction",
                    r#"{Effect: Allow, Action: s3:GetObject, Resource: {"Fn::Sub": "${ExportsBucket.Arn}/*"}}"#,
                )
            },
            &["RestorerFunction: grants more than it needs: (\"s3:GetObject\", \"${ExportsBucket.Arn}/*\")"],
        ),
        (
            "exports never expire",
            |t| {
                let rules = &mut t["Resources"]["ExportsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"];
                if let Some(rules) = rules.as_sequence_mut() {
                    rules.retain(|r| r["ExpirationInDays"].is_null());
                }
            },
            &["ExportsBucket: no lifecycle rule expires exports"],
        ),
        (
            "exports get Object Lock and a public ACL",
            |t| {
                set(t, &["Resources", "ExportsBucket", "Properties", "ObjectLockEnabled"], "true");
                set(
                    t,
                    &["Resources", "ExportsBucket", "Properties", "PublicAccessBlockConfiguration", "BlockPublicAcls"],
                    "false",
                );
            },
            &["ExportsBucket: Object Lock", "ExportsBucket: BlockPublicAcls is not true"],
        ),
        (
            "exports accept plain HTTP",
            |t| {
                if let Some(resources) = t["Resources"].as_mapping_mut() {
                    resources.remove("ExportsBucketPolicy");
                }
            },
            &["ExportsBucket: no bucket policy denies plain HTTP"],
        ),
        (
            "restorer gains s3:PutObject on the vault",
            |t| {
                add_statement(
                    t,
                    "RestorerFunction",
                    r#"{Effect: Allow, Action: s3:PutObject, Resource: {"Fn::Sub": "${VaultBucket.Arn}/*"}}"#,
                )
            },
            &[
                "RestorerFunction: grants more than it needs: (\"s3:PutObject\"",
                "RestorerFunction: s3:PutObject on ${VaultBucket.Arn}/* writes to the vault",
            ],
        ),
        (
            "restorer may shorten or extend retention",
            |t| {
                add_statement(
                    t,
                    "RestorerFunction",
                    r#"{Effect: Allow, Action: s3:PutObjectRetention, Resource: {"Fn::Sub": "${VaultBucket.Arn}/*"}}"#,
                )
            },
            &["RestorerFunction: s3:PutObjectRetention on ${VaultBucket.Arn}/* writes to the vault"],
        ),
        (
            "restore API gets a single-character wildcard that covers PutObject",
            |t| {
                add_statement(
                    t,
                    "RestoreApiFunction",
                    r#"{Effect: Allow, Action: "s3:?utObject", Resource: {"Fn::Sub": "${VaultBucket.Arn}/*"}}"#,
                )
            },
            &["RestoreApiFunction: s3:?utObject on ${VaultBucket.Arn}/* allows s3:PutObject"],
        ),
        (
            "restore API gets s3:*",
            |t| add_statement(t, "RestoreApiFunction", r#"{Effect: Allow, Action: "s3:*", Resource: "*"}"#),
            &[
                "RestoreApiFunction: wildcard action s3:*",
                "RestoreApiFunction: s3:* on * allows s3:BypassGovernanceRetention",
            ],
        ),
        (
            "restorer may delete catalog rows",
            |t| {
                add_statement(
                    t,
                    "RestorerFunction",
                    r#"{Effect: Allow, Action: dynamodb:DeleteItem, Resource: {"Fn::GetAtt": [CatalogTable, Arn]}}"#,
                )
            },
            &["RestorerFunction: dynamodb:DeleteItem on CatalogTable.Arn allows dynamodb:DeleteItem"],
        ),
        (
            "restorer loses its fan-out",
            |t| {
                statements_of(t, "RestorerFunction").retain(|s| s["Sid"].as_str() != Some("FanOutRestoreJobs"));
            },
            &["RestorerFunction: lacks (\"sqs:SendMessage\", \"RestoresQueue.Arn\")"],
        ),
        (
            "restore API reads the reader secret",
            |t| {
                add_statement(
                    t,
                    "RestoreApiFunction",
                    "{Effect: Allow, Action: secretsmanager:GetSecretValue, Resource: {Ref: GraphReaderSecret}}",
                )
            },
            &["RestoreApiFunction: reads secrets (secretsmanager:GetSecretValue on GraphReaderSecret)"],
        ),
        (
            "restore API gets the restorer secret's ARN in its environment",
            |t| {
                set(
                    t,
                    &[
                        "Resources",
                        "RestoreApiFunction",
                        "Properties",
                        "Environment",
                        "Variables",
                        "GRAPH_RESTORER_SECRET_ARN",
                    ],
                    "{Ref: GraphRestorerSecret}",
                )
            },
            &[
                "RestoreApiFunction: can read GraphRestorerSecret",
                "RestoreApiFunction: has GraphRestorerSecret in its environment",
            ],
        ),
        (
            "the copier may read the restorer secret",
            |t| {
                add_statement(
                    t,
                    "CopierFunction",
                    "{Effect: Allow, Action: secretsmanager:GetSecretValue, Resource: {Ref: GraphRestorerSecret}}",
                )
            },
            &["CopierFunction: can read GraphRestorerSecret"],
        ),
        (
            "the scheduler may read every secret",
            |t| add_statement(t, "SchedulerFunction", r#"{Effect: Allow, Action: "secretsmanager:*", Resource: "*"}"#),
            &["SchedulerFunction: can read GraphRestorerSecret"],
        ),
        (
            "the restore API loses IAM authorization",
            |t| {
                t["Resources"]["RestoreApi"].as_mapping_mut().expect("api").remove("Properties");
            },
            &[
                "RestoreApiFunction.Root: ANY / is not IAM-authorized",
                "RestoreApiFunction.Proxy: ANY /{proxy+} is not IAM-authorized",
            ],
        ),
        (
            "AWS_IAM as the default without enabling the IAM authorizer",
            |t| {
                t["Resources"]["RestoreApi"]["Properties"]["Auth"]
                    .as_mapping_mut()
                    .expect("auth")
                    .remove("EnableIamAuthorizer");
            },
            &["RestoreApiFunction.Proxy: ANY /{proxy+} is not IAM-authorized"],
        ),
        (
            "one restore route opts out of authorization",
            |t| {
                set(
                    t,
                    &["Resources", "RestoreApiFunction", "Properties", "Events", "Proxy", "Properties", "Auth"],
                    "{Authorizer: NONE}",
                )
            },
            &["RestoreApiFunction.Proxy: ANY /{proxy+} is not IAM-authorized (authorizer None)"],
        ),
        (
            "a restore route moves to SAM's implicit (public) API",
            |t| {
                t["Resources"]["RestoreApiFunction"]["Properties"]["Events"]["Root"]["Properties"]
                    .as_mapping_mut()
                    .expect("props")
                    .remove("ApiId");
            },
            &["RestoreApiFunction.Root: ANY / is not IAM-authorized"],
        ),
        (
            "a restore route goes on the public notifications API",
            |t| {
                set(
                    t,
                    &["Resources", "RestoreApiFunction", "Properties", "Events", "Proxy", "Properties", "ApiId"],
                    "{Ref: NotificationsApi}",
                )
            },
            &["RestoreApiFunction.Proxy: ANY /{proxy+} is not IAM-authorized"],
        ),
        (
            "the restore routes disappear",
            |t| {
                t["Resources"]["RestoreApiFunction"]["Properties"].as_mapping_mut().expect("props").remove("Events");
            },
            &["RestoreApiFunction: route ANY / is missing", "RestoreApiFunction: route ANY /{proxy+} is missing"],
        ),
        (
            "the notification route is put behind IAM, so Graph cannot reach it",
            |t| {
                set(
                    t,
                    &["Resources", "NotificationsApi", "Properties"],
                    "{Auth: {EnableIamAuthorizer: true, DefaultAuthorizer: AWS_IAM}}",
                )
            },
            &["WebhookFunction.Notifications: POST /graph/notifications must stay public"],
        ),
        (
            "a public function URL on the restorer",
            |t| set(t, &["Resources", "RestorerFunction", "Properties", "FunctionUrlConfig"], "{AuthType: NONE}"),
            &["RestorerFunction: function URL without IAM auth"],
        ),
        (
            "the restore API outlives API Gateway",
            |t| set(t, &["Resources", "RestoreApiFunction", "Properties", "Timeout"], "60"),
            &["RestoreApiFunction: timeout 60s outlives"],
        ),
        (
            "the restorer's event source without a concurrency cap",
            |t| {
                t["Resources"]["RestorerFunction"]["Properties"]["Events"]["Restores"]["Properties"]
                    .as_mapping_mut()
                    .expect("props")
                    .remove("ScalingConfig");
            },
            &["RestorerFunction.Restores: ScalingConfig.MaximumConcurrency"],
        ),
        (
            "the restorer's event source without partial batch failures",
            |t| {
                t["Resources"]["RestorerFunction"]["Properties"]["Events"]["Restores"]["Properties"]
                    .as_mapping_mut()
                    .expect("props")
                    .remove("FunctionResponseTypes");
            },
            &["RestorerFunction.Restores: no ReportBatchItemFailures"],
        ),
        (
            "restores visibility shorter than six restorer timeouts",
            |t| set(t, &["Resources", "RestoresQueue", "Properties", "VisibilityTimeout"], "3600"),
            &["RestoresQueue: visibility timeout 3600s < 6 x RestorerFunction's timeout 900s"],
        ),
        (
            "restores queue without a dead-letter queue",
            |t| {
                t["Resources"]["RestoresQueue"]["Properties"].as_mapping_mut().expect("props").remove("RedrivePolicy");
            },
            &["RestoresQueue: no dead-letter queue"],
        ),
        (
            "restores dead-letter queue without an alarm",
            |t| {
                t["Resources"].as_mapping_mut().expect("resources").remove("RestoresDeadLetterAlarm");
            },
            &["RestoresDeadLetterQueue: dead-letter queue without an alarm"],
        ),
        (
            "files recorded as served without an alarm",
            |t| {
                t["Resources"].as_mapping_mut().expect("resources").remove("AsServedVersionsAlarm");
            },
            &["metric VersionsRecordedAsServed: emitted without an alarm"],
        ),
        (
            "vault problems without an alarm",
            |t| {
                t["Resources"].as_mapping_mut().expect("resources").remove("VaultProblemsAlarm");
            },
            &["metric VaultProblems: emitted without an alarm"],
        ),
        (
            "vault problems alarmed only from two",
            |t| {
                t["Resources"]["VaultProblemsAlarm"]["Properties"]["Threshold"] = Value::Number(2.into());
            },
            &["metric VaultProblems: no alarm fires on a single count"],
        ),
        (
            "lock extension failures without an alarm",
            |t| {
                t["Resources"].as_mapping_mut().expect("resources").remove("LockExtensionFailuresAlarm");
            },
            &["metric LockExtensionFailures: emitted without an alarm"],
        ),
        (
            "keeper gains s3:PutObject on the vault",
            |t| {
                add_statement(
                    t,
                    "KeeperFunction",
                    r#"{Effect: Allow, Action: s3:PutObject, Resource: {"Fn::Sub": "${VaultBucket.Arn}/*"}}"#,
                )
            },
            &[
                "KeeperFunction: grants more than it needs",
                "KeeperFunction: s3:PutObject on ${VaultBucket.Arn}/* does more than lock",
            ],
        ),
        (
            "keeper may bypass governance retention",
            |t| {
                add_statement(
                    t,
                    "KeeperFunction",
                    r#"{Effect: Allow, Action: s3:BypassGovernanceRetention, Resource: {"Fn::Sub": "${VaultBucket.Arn}/*"}}"#,
                )
            },
            &["KeeperFunction: s3:BypassGovernanceRetention on ${VaultBucket.Arn}/* does more than lock"],
        ),
        (
            "keeper may place legal holds",
            |t| {
                add_statement(
                    t,
                    "KeeperFunction",
                    r#"{Effect: Allow, Action: s3:PutObjectLegalHold, Resource: {"Fn::Sub": "${VaultBucket.Arn}/*"}}"#,
                )
            },
            &["KeeperFunction: s3:PutObjectLegalHold on ${VaultBucket.Arn}/* does more than lock"],
        ),
        (
            "keeper may change bucket settings",
            |t| {
                add_statement(
                    t,
                    "KeeperFunction",
                    r#"{Effect: Allow, Action: "s3:PutBucket*", Resource: {"Fn::GetAtt": [VaultBucket, Arn]}}"#,
                )
            },
            &["KeeperFunction: s3:PutBucket* on VaultBucket.Arn does more than lock"],
        ),
        (
            "keeper gets a wildcard that covers object writes",
            |t| {
                add_statement(
                    t,
                    "KeeperFunction",
                    r#"{Effect: Allow, Action: "s3:*Object", Resource: {"Fn::Sub": "${VaultBucket.Arn}/*"}}"#,
                )
            },
            &["KeeperFunction: s3:*Object on ${VaultBucket.Arn}/* allows s3:PutObject", "deletes objects"],
        ),
        (
            "keeper loses PutObjectRetention",
            |t| {
                let statements = statements_of(t, "KeeperFunction");
                let vault = statements.iter_mut().find(|s| s["Sid"] == "ReadAndLockVaultObjects").expect("statement");
                vault["Action"].as_sequence_mut().expect("actions").retain(|a| a != "s3:PutObjectRetention");
            },
            &["KeeperFunction: cannot set the retention of vault objects"],
        ),
        (
            "copier loses PutObjectRetention",
            |t| {
                let statements = statements_of(t, "CopierFunction");
                let vault = statements.iter_mut().find(|s| s["Sid"] == "WriteAndReadVaultObjects").expect("statement");
                vault["Action"].as_sequence_mut().expect("actions").retain(|a| a != "s3:PutObjectRetention");
            },
            &["CopierFunction: cannot set the retention of vault objects"],
        ),
        (
            "restore API may delete object tags",
            |t| {
                add_statement(
                    t,
                    "RestoreApiFunction",
                    r#"{Effect: Allow, Action: s3:DeleteObjectTagging, Resource: {"Fn::Sub": "${ExportsBucket.Arn}/*"}}"#,
                )
            },
            &["RestoreApiFunction: s3:DeleteObjectTagging on ${ExportsBucket.Arn}/* deletes objects"],
        ),
        (
            "large copier gains a delete wildcard",
            |t| {
                add_statement(
                    t,
                    "LargeCopierFunction",
                    r#"{Effect: Allow, Action: "s3:Delete*", Resource: {"Fn::Sub": "${VaultBucket.Arn}/*"}}"#,
                )
            },
            &["LargeCopierFunction: s3:Delete* on ${VaultBucket.Arn}/* deletes objects"],
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
