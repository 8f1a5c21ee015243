//! Reading `template.yaml` the way CloudFormation would for the resources the local stack
//! creates: parameters take their defaults, `Ref`/`Fn::Sub`/`Fn::GetAtt` resolve to pseudo
//! parameters and to resources already created. Pure, so it is tested without moto.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing the template as YAML")]
    Parse(#[source] serde_yaml::Error),
    #[error("{at}: {problem}")]
    Malformed { at: String, problem: String },
    #[error("{at}: `{name}` is neither a parameter with a default, a pseudo parameter, nor a resource created so far")]
    Unresolved { at: String, name: String },
    #[error("{at}: intrinsic `{function}` is not supported by the local stack")]
    UnsupportedIntrinsic { at: String, function: String },
    #[error(
        "{at}: the template declares `{property}`, which the local stack does not apply; teach provision.rs about it"
    )]
    UnsupportedProperty { at: String, property: String },
}

fn malformed(at: &str, problem: impl Into<String>) -> TemplateError {
    TemplateError::Malformed { at: at.to_owned(), problem: problem.into() }
}

/// One resource as declared (properties unresolved).
#[derive(Debug, Clone)]
pub struct Resource {
    pub logical_id: String,
    pub kind: String,
    pub properties: Mapping,
}

#[derive(Debug, Clone)]
pub struct Template {
    /// Parameter name → its `Default`, for those that have one.
    parameter_defaults: BTreeMap<String, Value>,
    resources: BTreeMap<String, Resource>,
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| TemplateError::Read { path: path.to_owned(), source })?;
        Template::from_yaml(&text)
    }

    pub fn from_yaml(text: &str) -> Result<Template, TemplateError> {
        let doc: Value = serde_yaml::from_str(text).map_err(TemplateError::Parse)?;
        let mut parameter_defaults = BTreeMap::new();
        if let Some(params) = doc.get("Parameters").and_then(Value::as_mapping) {
            for (name, decl) in params {
                let name = name.as_str().ok_or_else(|| malformed("Parameters", "non-string name"))?;
                if let Some(default) = decl.get("Default") {
                    parameter_defaults.insert(name.to_owned(), default.clone());
                }
            }
        }
        let mut resources = BTreeMap::new();
        let declared = doc
            .get("Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| malformed("Resources", "missing or not a mapping"))?;
        for (id, decl) in declared {
            let logical_id = id.as_str().ok_or_else(|| malformed("Resources", "non-string logical id"))?.to_owned();
            let kind = decl
                .get("Type")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(&logical_id, "missing Type"))?
                .to_owned();
            let properties = match decl.get("Properties") {
                None => Mapping::new(),
                Some(Value::Mapping(m)) => m.clone(),
                Some(_) => return Err(malformed(&logical_id, "Properties is not a mapping")),
            };
            resources.insert(logical_id.clone(), Resource { logical_id, kind, properties });
        }
        Ok(Template { parameter_defaults, resources })
    }

    /// Resources of one CloudFormation type, in logical-id order.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Resource> + 'a {
        self.resources.values().filter(move |r| r.kind == kind)
    }

    pub fn resource(&self, logical_id: &str) -> Option<&Resource> {
        self.resources.get(logical_id)
    }
}

/// Resolves intrinsics against parameter defaults, pseudo parameters and the resources
/// recorded so far (so dependencies must be created first, as CloudFormation would).
#[derive(Debug, Clone)]
pub struct Resolver {
    stack_name: String,
    region: String,
    account_id: String,
    parameters: BTreeMap<String, Value>,
    /// Logical id → what `Ref` returns for it (queue URL, bucket name, secret ARN...).
    refs: BTreeMap<String, String>,
    /// `LogicalId.Attribute` → what `Fn::GetAtt` returns.
    attributes: BTreeMap<String, String>,
}

impl Resolver {
    pub fn new(template: &Template, stack_name: &str, region: &str, account_id: &str) -> Self {
        Resolver {
            stack_name: stack_name.to_owned(),
            region: region.to_owned(),
            account_id: account_id.to_owned(),
            parameters: template.parameter_defaults.clone(),
            refs: BTreeMap::new(),
            attributes: BTreeMap::new(),
        }
    }

    pub fn record_ref(&mut self, logical_id: &str, value: impl Into<String>) {
        self.refs.insert(logical_id.to_owned(), value.into());
    }

    pub fn record_attribute(&mut self, logical_id: &str, attribute: &str, value: impl Into<String>) {
        self.attributes.insert(format!("{logical_id}.{attribute}"), value.into());
    }

    /// The resource's properties with every intrinsic resolved.
    pub fn properties(&self, resource: &Resource) -> Result<Mapping, TemplateError> {
        let value = Value::Mapping(resource.properties.clone());
        match self.resolve_at(&resource.logical_id, &value)? {
            Some(Value::Mapping(m)) => Ok(m),
            _ => Err(malformed(&resource.logical_id, "Properties vanished")),
        }
    }

    /// The name CloudFormation would use: the declared name property when there is one,
    /// otherwise a deterministic `{stack}-{logical id in lower case}` (CloudFormation would
    /// add a random suffix; tests want names they can predict).
    pub fn physical_name(&self, resource: &Resource, name_property: &str) -> Result<String, TemplateError> {
        match resource.properties.get(name_property) {
            Some(v) => {
                let at = format!("{}.{name_property}", resource.logical_id);
                match self.resolve_at(&at, v)? {
                    Some(v) => scalar_string(&at, &v),
                    None => Ok(self.default_name(&resource.logical_id)),
                }
            }
            None => Ok(self.default_name(&resource.logical_id)),
        }
    }

    fn default_name(&self, logical_id: &str) -> String {
        format!("{}-{}", self.stack_name, logical_id.to_lowercase())
    }

    /// Resolves one value; `None` means `AWS::NoValue` (the key or element disappears).
    pub fn resolve(&self, value: &Value) -> Result<Option<Value>, TemplateError> {
        self.resolve_at("template", value)
    }

    fn resolve_at(&self, at: &str, value: &Value) -> Result<Option<Value>, TemplateError> {
        match value {
            Value::Mapping(map) => {
                if map.len() == 1
                    && let Some((Value::String(key), arg)) = map.iter().next()
                    && (key == "Ref" || key.starts_with("Fn::") || key == "Condition")
                {
                    return self.intrinsic(at, key, arg);
                }
                let mut out = Mapping::new();
                for (k, v) in map {
                    let child_at = format!("{at}.{}", k.as_str().unwrap_or("?"));
                    if let Some(v) = self.resolve_at(&child_at, v)? {
                        out.insert(k.clone(), v);
                    }
                }
                Ok(Some(Value::Mapping(out)))
            }
            Value::Sequence(items) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, v) in items.iter().enumerate() {
                    if let Some(v) = self.resolve_at(&format!("{at}[{i}]"), v)? {
                        out.push(v);
                    }
                }
                Ok(Some(Value::Sequence(out)))
            }
            Value::Tagged(_) => Err(malformed(at, "short-form intrinsics (`!Ref`) are not allowed: use the long form")),
            other => Ok(Some(other.clone())),
        }
    }

    fn intrinsic(&self, at: &str, function: &str, arg: &Value) -> Result<Option<Value>, TemplateError> {
        match function {
            "Ref" => {
                let name = arg.as_str().ok_or_else(|| malformed(at, "Ref takes a name"))?;
                if name == "AWS::NoValue" {
                    return Ok(None);
                }
                self.lookup_ref(at, name).map(Some)
            }
            "Fn::GetAtt" => {
                let (id, attr) = match arg {
                    Value::Sequence(parts) if parts.len() == 2 => (
                        parts[0].as_str().unwrap_or_default().to_owned(),
                        parts[1].as_str().unwrap_or_default().to_owned(),
                    ),
                    Value::String(s) => match s.split_once('.') {
                        Some((id, attr)) => (id.to_owned(), attr.to_owned()),
                        None => return Err(malformed(at, "Fn::GetAtt needs `Id.Attribute`")),
                    },
                    _ => return Err(malformed(at, "Fn::GetAtt takes [Id, Attribute]")),
                };
                self.lookup_attribute(at, &id, &attr).map(|v| Some(Value::String(v)))
            }
            "Fn::Sub" => {
                let (text, vars) = match arg {
                    Value::String(s) => (s.as_str(), None),
                    Value::Sequence(parts) if parts.len() == 2 => (
                        parts[0].as_str().ok_or_else(|| malformed(at, "Fn::Sub template must be a string"))?,
                        parts[1].as_mapping(),
                    ),
                    _ => return Err(malformed(at, "Fn::Sub takes a string or [string, vars]")),
                };
                self.substitute(at, text, vars).map(|s| Some(Value::String(s)))
            }
            other => Err(TemplateError::UnsupportedIntrinsic { at: at.to_owned(), function: other.to_owned() }),
        }
    }

    fn lookup_ref(&self, at: &str, name: &str) -> Result<Value, TemplateError> {
        let pseudo = match name {
            "AWS::StackName" => Some(self.stack_name.clone()),
            "AWS::Region" => Some(self.region.clone()),
            "AWS::AccountId" => Some(self.account_id.clone()),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            _ => None,
        };
        if let Some(v) = pseudo {
            return Ok(Value::String(v));
        }
        if let Some(v) = self.parameters.get(name) {
            return Ok(v.clone());
        }
        if let Some(v) = self.refs.get(name) {
            return Ok(Value::String(v.clone()));
        }
        Err(TemplateError::Unresolved { at: at.to_owned(), name: name.to_owned() })
    }

    fn lookup_attribute(&self, at: &str, id: &str, attr: &str) -> Result<String, TemplateError> {
        self.attributes
            .get(&format!("{id}.{attr}"))
            .cloned()
            .ok_or_else(|| TemplateError::Unresolved { at: at.to_owned(), name: format!("{id}.{attr}") })
    }

    fn substitute(&self, at: &str, text: &str, vars: Option<&Mapping>) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after.find('}').ok_or_else(|| malformed(at, "unterminated ${ in Fn::Sub"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(v) = vars.and_then(|m| m.get(name)) {
                let v = self.resolve_at(at, v)?.ok_or_else(|| malformed(at, "Fn::Sub variable is AWS::NoValue"))?;
                out.push_str(&scalar_string(at, &v)?);
            } else if let Some((id, attr)) = name.split_once('.') {
                out.push_str(&self.lookup_attribute(at, id, attr)?);
            } else {
                out.push_str(&scalar_string(at, &self.lookup_ref(at, name)?)?);
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn scalar_string(at: &str, value: &Value) -> Result<String, TemplateError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(malformed(at, "expected a scalar")),
    }
}

/// Typed, path-aware access to resolved properties, so a template typo fails with the
/// property's full name instead of silently provisioning something else.
#[derive(Debug, Clone, Copy)]
pub struct Props<'a> {
    at: &'a str,
    map: &'a Mapping,
}

impl<'a> Props<'a> {
    pub fn new(at: &'a str, map: &'a Mapping) -> Self {
        Props { at, map }
    }

    pub fn at(&self) -> &str {
        self.at
    }

    /// Fails on any property outside `known`: the local stack must apply everything the
    /// template declares, or say loudly that it does not.
    pub fn only(&self, known: &[&str]) -> Result<(), TemplateError> {
        for key in self.map.keys() {
            let key = key.as_str().unwrap_or("?");
            if !known.contains(&key) {
                return Err(TemplateError::UnsupportedProperty { at: self.at.to_owned(), property: key.to_owned() });
            }
        }
        Ok(())
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.map.keys().filter_map(Value::as_str)
    }

    pub fn str(&self, key: &str) -> Result<Option<String>, TemplateError> {
        self.map.get(key).map(|v| scalar_string(&format!("{}.{key}", self.at), v)).transpose()
    }

    pub fn req_str(&self, key: &str) -> Result<String, TemplateError> {
        self.str(key)?.ok_or_else(|| malformed(self.at, format!("missing {key}")))
    }

    /// Booleans as CloudFormation reads them: `true` or `"true"`.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, TemplateError> {
        match self.str(key)?.as_deref() {
            None => Ok(None),
            Some("true") | Some("True") => Ok(Some(true)),
            Some("false") | Some("False") => Ok(Some(false)),
            Some(other) => Err(malformed(self.at, format!("{key}: `{other}` is not a boolean"))),
        }
    }

    /// Integers as CloudFormation reads them: `35` or `"35"` (a Number parameter's Ref).
    pub fn int(&self, key: &str) -> Result<Option<i64>, TemplateError> {
        match self.str(key)? {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| malformed(self.at, format!("{key}: `{s}` is not an integer"))),
        }
    }

    pub fn map(&self, key: &str) -> Result<Option<Mapping>, TemplateError> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Mapping(m)) => Ok(Some(m.clone())),
            Some(_) => Err(malformed(self.at, format!("{key} is not a mapping"))),
        }
    }

    /// A list of mappings (rules, key schemas, indexes).
    pub fn list(&self, key: &str) -> Result<Vec<Mapping>, TemplateError> {
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|v| {
                    v.as_mapping().cloned().ok_or_else(|| malformed(self.at, format!("{key} holds a non-mapping")))
                })
                .collect(),
            Some(_) => Err(malformed(self.at, format!("{key} is not a list"))),
        }
    }
}

/// `serde_yaml` → `serde_json`, for properties that SQS takes as JSON strings.
pub fn to_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                serde_json::Value::from(i)
            } else if let Some(u) = n.as_u64() {
                serde_json::Value::from(u)
            } else {
                serde_json::Value::from(n.as_f64().unwrap_or_default())
            }
        }
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Sequence(items) => serde_json::Value::Array(items.iter().map(to_json).collect()),
        Value::Mapping(m) => serde_json::Value::Object(
            m.iter().map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_json(v))).collect(),
        ),
        Value::Tagged(t) => to_json(&t.value),
    }
}
