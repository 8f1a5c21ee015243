//! `openapi.yaml` and the router describe the same API: the same (method, path) set, each
//! route's query parameters named exactly as its query struct's serde fields, path parameters
//! as in the path template, a JSON body where the handler reads one, and problem responses.
//! Mutation cases prove that every rule can fail.

use std::cell::RefCell;
use std::collections::BTreeSet;

use serde::de::{self, Deserialize, Visitor};
use serde_yaml::Value;

use super::{ROUTES, route_query_fields};

const SPEC: &str = include_str!("../../../openapi.yaml");
const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options", "trace"];

thread_local! {
    static FIELDS: RefCell<Option<&'static [&'static str]>> = const { RefCell::new(None) };
}

/// Stops after serde's derive tells it the struct's field names.
struct FieldNames;

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names captured")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> de::Deserializer<'de> for FieldNames {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        FIELDS.with(|f| *f.borrow_mut() = Some(fields));
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

/// The serde field names of a `#[derive(Deserialize)]` struct.
pub(super) fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    FIELDS.with(|f| *f.borrow_mut() = None);
    let _ = T::deserialize(FieldNames);
    FIELDS.with(|f| f.borrow_mut().take()).unwrap_or_else(|| panic!("{} is not a struct", std::any::type_name::<T>()))
}

fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    let Some(reference) = node.get("$ref").and_then(Value::as_str) else { return node };
    let mut target = spec;
    for part in reference.trim_start_matches("#/").split('/') {
        target = target.get(part).unwrap_or(&Value::Null);
    }
    target
}

fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).map(str::to_owned).collect()
}

/// Every way `spec` and the router disagree, in words.
fn mismatches(spec: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if spec.get("openapi").and_then(Value::as_str).is_none_or(|v| !v.starts_with("3.1")) {
        out.push("not an OpenAPI 3.1 document".to_owned());
    }
    let empty = serde_yaml::Mapping::new();
    let paths = spec.get("paths").and_then(Value::as_mapping).unwrap_or(&empty);
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().unwrap_or_default();
        let shared_params = item.get("parameters").and_then(Value::as_sequence).cloned().unwrap_or_default();
        for method in METHODS {
            let Some(op) = item.get(*method) else { continue };
            let route = (method.to_uppercase(), path.to_owned());
            documented.insert(route.clone());
            let mut params = shared_params.clone();
            params.extend(op.get("parameters").and_then(Value::as_sequence).cloned().unwrap_or_default());
            let named = |place: &str| -> BTreeSet<String> {
                params
                    .iter()
                    .map(|p| resolve(spec, p))
                    .filter(|p| p.get("in").and_then(Value::as_str) == Some(place))
                    .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            };
            if named("path") != template_params(path) {
                out.push(format!("{route:?}: path parameters {:?} differ from the template", named("path")));
            }
            let fields = route_query_fields()
                .into_iter()
                .find(|(m, p, _)| *m == route.0 && *p == route.1)
                .map(|(_, _, f)| f.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
            if let Some(fields) = fields
                && named("query") != fields
            {
                out.push(format!("{route:?}: query parameters {:?} but the handler reads {fields:?}", named("query")));
            }
            let has_body = op
                .get("requestBody")
                .is_some_and(|b| resolve(spec, b).get("content").and_then(|c| c.get("application/json")).is_some());
            // Every POST reads a JSON body but the actions on a job (`.../cancel`).
            let takes_body = route.0 == "POST" && !route.1.ends_with("/cancel");
            if has_body != takes_body {
                out.push(format!("{route:?}: a JSON request body is documented iff the route takes one"));
            }
            let responses = op.get("responses").and_then(Value::as_mapping).cloned().unwrap_or_default();
            let mut problems = 0;
            for (status, response) in &responses {
                let status = match status {
                    Value::Number(n) => n.to_string(),
                    other => other.as_str().unwrap_or_default().to_owned(),
                };
                let content = resolve(spec, response).get("content");
                let is_problem = content.is_some_and(|c| c.get("application/problem+json").is_some());
                if status.starts_with('4') || status.starts_with('5') {
                    problems += 1;
                    if !is_problem {
                        out.push(format!("{route:?}: response {status} is not application/problem+json"));
                    }
                }
            }
            if problems == 0 {
                out.push(format!("{route:?}: no problem responses documented"));
            }
        }
    }
    let served: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    for missing in served.difference(&documented) {
        out.push(format!("{missing:?} is served but not documented"));
    }
    for extra in documented.difference(&served) {
        out.push(format!("{extra:?} is documented but not served"));
    }
    out
}

fn spec() -> Value {
    serde_yaml::from_str(SPEC).expect("openapi.yaml parses")
}

#[test]
fn the_spec_documents_exactly_the_served_routes_and_parameters() {
    assert_eq!(mismatches(&spec()), Vec::<String>::new());
}

#[test]
fn query_structs_expose_their_serde_names() {
    assert_eq!(field_names::<super::browse::ChildrenQuery>(), ["parent", "at", "cursor", "limit"]);
    assert_eq!(field_names::<super::NoQuery>(), [] as [&str; 0]);
}

fn mutated(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut spec = spec();
    edit(&mut spec);
    mismatches(&spec)
}

fn op<'a>(spec: &'a mut Value, path: &str, method: &str) -> &'a mut Value {
    spec.get_mut("paths").and_then(|p| p.get_mut(path)).and_then(|i| i.get_mut(method)).expect("operation")
}

type Edit = Box<dyn FnOnce(&mut Value)>;

#[test]
fn each_rule_fires_on_a_spec_that_breaks_it() {
    let cases: Vec<(&str, Edit)> = vec![
        (
            "served but not documented",
            Box::new(|s| {
                s.get_mut("paths").and_then(Value::as_mapping_mut).expect("paths").remove("/v1/resources");
            }),
        ),
        (
            "documented but not served",
            Box::new(|s| {
                let item = s["paths"]["/v1/restores"].clone();
                s["paths"].as_mapping_mut().expect("paths").insert("/v1/exports".into(), item);
            }),
        ),
        (
            "but the handler reads",
            Box::new(|s| {
                let params = op(s, "/v1/drives/{drive_id}/changes", "get")["parameters"].as_sequence_mut();
                params.expect("parameters").push(serde_yaml::from_str("{name: since, in: query}").expect("yaml"));
            }),
        ),
        (
            "but the handler reads",
            Box::new(|s| {
                let params = op(s, "/v1/restores/{job_id}/items", "get")["parameters"].as_sequence_mut();
                // Drops the shared `cursor` parameter (a `$ref`).
                params.expect("parameters").retain(|p| p.get("$ref").is_none());
            }),
        ),
        (
            "differ from the template",
            Box::new(|s| {
                let params = op(s, "/v1/restores/{job_id}", "get");
                params["parameters"] = serde_yaml::from_str("[{name: id, in: path}]").expect("yaml");
            }),
        ),
        (
            "is not application/problem+json",
            Box::new(|s| {
                op(s, "/v1/resources", "get")["responses"]["500"] =
                    serde_yaml::from_str("{description: x}").expect("yaml");
            }),
        ),
        (
            "a JSON request body",
            Box::new(|s| {
                op(s, "/v1/restores", "post").as_mapping_mut().expect("op").remove("requestBody");
            }),
        ),
        ("not an OpenAPI 3.1 document", Box::new(|s| s["openapi"] = "3.0.3".into())),
    ];
    for (expected, edit) in cases {
        let found = mutated(edit);
        assert!(found.iter().any(|m| m.contains(expected)), "expected {expected:?} in {found:?}");
    }
}
