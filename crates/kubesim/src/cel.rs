//! CRD `x-kubernetes-validations`: CEL rules compiled once per CRD version and evaluated on every write.
//!
//! Modelled on kube-apiserver's
//! `staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel/validation.go` (evaluation,
//! messages, transition rules, ratcheting) and
//! `staging/src/k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation/validation.go`
//! (what a CRD may declare). Expressions are parsed and evaluated by the `cel` crate (cel-rust); this
//! module only adds what the API server adds around cel-go: the `self`/`oldSelf` bindings, schema-aware
//! value conversion, a field-reference check against the schema, and the error wording.
//!
//! Not modelled: cost estimation and runtime cost budgets (the real server refuses rules whose
//! estimated cost is too high and stops evaluating past the per-request budget), full static type
//! checking (only references to undeclared variables, to fields the schema does not declare and
//! obviously non-boolean results are refused), the Kubernetes CEL libraries (`isSorted`, `url`,
//! `quantity`, `ip`, `cidr`, `format`, regex `find`), unordered equality of `set`/`map` lists, rules
//! inside `allOf`/`anyOf`/`oneOf`, and the `duration`/`byte` string formats (only `date-time` becomes a
//! CEL timestamp).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::common::ast::{EntryExpr, Expr};
use cel::objects::{Key, Map as CelMap, OptionalValue};
use cel::{Context, Env, ExecutionError, IdedExpr, Program, Value as CelValue};
use serde_json::Value;

use crate::errors::Cause;

/// Reasons a failing rule may report, as `x-kubernetes-validations[].reason` allows.
const SUPPORTED_REASONS: &[&str] = &[
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

/// Identifiers that kube-apiserver escapes as `__name__` in property names
/// (`staging/src/k8s.io/apiserver/pkg/cel/escaping.go`).
const RESERVED: &[&str] = &[
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// The environment every rule is compiled and run in: the CEL standard library and the extensions
/// cel-rust ships that the Kubernetes environment also has (strings, lists, math).
static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // The extensions only fail on a duplicate declaration, which a fresh stdlib cannot have; if a
    // future crate version did, rules that use them fail with "undeclared reference" instead.
    for ext in [cel::extensions::strings, cel::extensions::lists, cel::extensions::math] {
        if let Err(e) = env.add_extension(ext) {
            tracing::warn!(error = %e, "CEL extension not available");
        }
    }
    Arc::new(env)
});

/// A `field.Path` as the API server prints it: `spec.items[0].labels[app]`, `<nil>` for the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    /// A path starting at `name`.
    pub fn new(name: &str) -> Self {
        Self(name.to_string())
    }

    /// The path of a named child.
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Self(name.to_string())
        } else {
            Self(format!("{}.{name}", self.0))
        }
    }

    /// The path of a list element.
    pub fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    /// The path of a map entry.
    pub fn key(&self, k: &str) -> Self {
        Self(format!("{}[{k}]", self.0))
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            // A nil *field.Path prints like this; root rules report it (the real server validates
            // custom resources with a nil root path).
            f.write_str("<nil>")
        } else {
            f.write_str(&self.0)
        }
    }
}

/// One compiled `x-kubernetes-validations` entry.
#[derive(Debug)]
struct Rule {
    source: String,
    message: Option<String>,
    message_expression: Option<Program>,
    reason: Option<String>,
    /// The validated `fieldPath`, already rendered as a `field.Path` (appended as one child).
    field_path: Option<String>,
    uses_old_self: bool,
    optional_old_self: bool,
    program: Program,
}

/// How the elements of a list correlate with the elements of the old list.
#[derive(Debug, Clone, PartialEq)]
enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// The rules of one schema node and of the nodes below it that have rules.
#[derive(Debug)]
struct Node {
    /// The schema's `type`, printed as the "value" of a failed rule (`Invalid value: "object"`).
    type_name: String,
    /// The node's schema, used to convert JSON into CEL values.
    schema: Value,
    resource_root: bool,
    rules: Vec<Rule>,
    properties: Vec<(String, Node)>,
    items: Option<Box<Node>>,
    additional: Option<Box<Node>>,
    list_type: ListType,
}

/// The compiled validation rules of one CRD version. Built once when the CRD is registered.
#[derive(Debug)]
pub struct Validator {
    root: Node,
}

/// A problem with a rule found when the CRD is created or updated.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    /// Field path in the CRD, e.g. `<at>.properties[spec].x-kubernetes-validations[0].rule`.
    pub field: String,
    /// `FieldValueInvalid`, `FieldValueRequired`, …
    pub reason: &'static str,
    /// The cause message, e.g. `Invalid value: …: compilation failed: ERROR: <input>:1:6: …`.
    pub message: String,
}

impl Validator {
    /// Compiles every rule of `schema` (an `openAPIV3Schema` found at field path `at` of the CRD, e.g.
    /// `spec.versions[0].schema.openAPIV3Schema`). `Ok(None)` when there is no rule. Any invalid rule
    /// makes it `Err` with all the problems found, as the CRD's 422 lists them.
    pub fn compile(schema: &Value, at: &str) -> Result<Option<Validator>, Vec<RuleError>> {
        let mut errors = Vec::new();
        let root = compile_node(schema, true, at, None, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(root.map(|root| Validator { root }))
    }

    /// Evaluates the rules against `obj` (and `old` on update). Returns the causes of a 422.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        // On create nothing ratchets; on update the root correlates with the old object.
        let ratchet = Ratchet {
            correlated: old.is_some(),
            equal: old.is_some_and(|o| o == obj),
        };
        self.root
            .validate(&FieldPath::default(), obj, old, ratchet, &mut causes);
        causes
    }
}

/// Whether errors at a node are ratcheted (CRDValidationRatcheting, GA in 1.30): the nearest node that
/// correlates with the old object is unchanged, so errors of rules that do not use `oldSelf` are
/// dropped (the real server returns them as warnings).
#[derive(Debug, Clone, Copy)]
struct Ratchet {
    correlated: bool,
    equal: bool,
}

impl Ratchet {
    fn descend(self, new: &Value, old: Option<&Value>) -> Ratchet {
        match old {
            Some(o) if self.correlated => Ratchet {
                correlated: true,
                equal: o == new,
            },
            // An uncorrelatable child keeps the verdict of its nearest correlatable ancestor.
            _ => Ratchet {
                correlated: false,
                equal: self.equal,
            },
        }
    }
}

fn rule_error(field: String, reason: &'static str, body: String) -> RuleError {
    RuleError {
        field,
        reason,
        message: body,
    }
}

/// Renders a rule as the internal Go struct the real server prints as the invalid value.
fn go_rule(r: &Value) -> String {
    let s = |k: &str| serde_json::to_string(r[k].as_str().unwrap_or_default()).unwrap_or_default();
    let reason = if r["reason"].is_string() {
        "(*apiextensions.FieldValueErrorReason)(0xc000000000)"
    } else {
        "(*apiextensions.FieldValueErrorReason)(nil)"
    };
    let optional = if r["optionalOldSelf"].is_boolean() {
        "(*bool)(0xc000000000)"
    } else {
        "(*bool)(nil)"
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{reason}, FieldPath:{}, OptionalOldSelf:{optional}}}",
        s("rule"),
        s("message"),
        s("messageExpression"),
        s("fieldPath"),
    )
}

/// Parse errors as cel-go prints them (its snippet lines start with " | ").
fn cel_go_parse_errors(e: &cel::ParseErrors) -> String {
    e.to_string().replace("\n| ", "\n | ")
}

fn has_newlines(s: &str) -> bool {
    s.contains('\n') || s.contains('\r')
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Compiles the rules at `schema` and below; `None` when nothing there has rules.
fn compile_node(
    schema: &Value,
    resource_root: bool,
    path: &str,
    parent_uncorrelatable: Option<&str>,
    errors: &mut Vec<RuleError>,
) -> Option<Node> {
    let list_type = match schema["x-kubernetes-list-type"].as_str() {
        Some("set") => ListType::Set,
        Some("map") => ListType::Map(
            schema["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|a| a.iter().filter_map(|k| k.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
        ),
        _ => ListType::Atomic,
    };
    let rules = compile_rules(schema, resource_root, path, parent_uncorrelatable, errors);
    let join = |p: &str, tail: &str| {
        if p.is_empty() {
            tail.to_string()
        } else {
            format!("{p}.{tail}")
        }
    };
    let mut properties = Vec::new();
    if let Some(props) = schema["properties"].as_object() {
        for (k, s) in props {
            let child_path = join(path, &format!("properties[{k}]"));
            let embedded = s["x-kubernetes-embedded-resource"] == true;
            if let Some(n) = compile_node(s, embedded, &child_path, parent_uncorrelatable, errors) {
                properties.push((k.clone(), n));
            }
        }
    }
    let items = schema.get("items").filter(|i| i.is_object()).and_then(|s| {
        let child_path = join(path, "items");
        // oldSelf is only available for elements of lists whose elements correlate (map lists).
        let uncorrelatable = match (&list_type, parent_uncorrelatable) {
            (_, Some(p)) => Some(p.to_string()),
            (ListType::Map(_), None) => None,
            (_, None) => Some(if path.is_empty() {
                "<nil>".to_string()
            } else {
                path.to_string()
            }),
        };
        let embedded = s["x-kubernetes-embedded-resource"] == true;
        compile_node(s, embedded, &child_path, uncorrelatable.as_deref(), errors).map(Box::new)
    });
    let additional = schema
        .get("additionalProperties")
        .filter(|a| a.is_object())
        .and_then(|s| {
            let child_path = join(path, "additionalProperties");
            let embedded = s["x-kubernetes-embedded-resource"] == true;
            compile_node(s, embedded, &child_path, parent_uncorrelatable, errors).map(Box::new)
        });
    if rules.is_empty() && properties.is_empty() && items.is_none() && additional.is_none() {
        return None;
    }
    Some(Node {
        type_name: schema["type"].as_str().unwrap_or_default().to_string(),
        schema: schema.clone(),
        resource_root,
        rules,
        properties,
        items,
        additional,
        list_type,
    })
}

fn compile_rules(
    schema: &Value,
    resource_root: bool,
    path: &str,
    uncorrelatable: Option<&str>,
    errors: &mut Vec<RuleError>,
) -> Vec<Rule> {
    let Some(list) = schema["x-kubernetes-validations"].as_array() else {
        return Vec::new();
    };
    let mut rules = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let at = |tail: &str| {
            let base = format!("x-kubernetes-validations[{i}].{tail}");
            if path.is_empty() {
                base
            } else {
                format!("{path}.{base}")
            }
        };
        let before = errors.len();
        let source = r["rule"].as_str().unwrap_or_default();
        let trimmed = source.trim();
        let message = r["message"].as_str().unwrap_or_default();
        let message_expression = r["messageExpression"].as_str().unwrap_or_default();
        let field_path = r["fieldPath"].as_str().unwrap_or_default();
        // The static checks of validation.go, in its order.
        if trimmed.is_empty() {
            errors.push(rule_error(
                at("rule"),
                "FieldValueRequired",
                "Required value: rule is not specified".into(),
            ));
        } else if !message.is_empty() && message.trim().is_empty() {
            errors.push(rule_error(
                at("message"),
                "FieldValueInvalid",
                format!(
                    "Invalid value: {}: message must be non-empty if specified",
                    quote(message)
                ),
            ));
        } else if has_newlines(message.trim()) {
            errors.push(rule_error(
                at("message"),
                "FieldValueInvalid",
                format!(
                    "Invalid value: {}: message must not contain line breaks",
                    quote(message)
                ),
            ));
        } else if has_newlines(trimmed) && message.trim().is_empty() {
            errors.push(rule_error(
                at("message"),
                "FieldValueRequired",
                "Required value: message must be specified if rule contains line breaks".into(),
            ));
        }
        if !message_expression.is_empty() && message_expression.trim().is_empty() {
            errors.push(rule_error(
                at("messageExpression"),
                "FieldValueRequired",
                "Required value: messageExpression must be non-empty if specified".into(),
            ));
        }
        let reason = r["reason"].as_str().map(str::to_string);
        if let Some(reason) = &reason
            && !SUPPORTED_REASONS.contains(&reason.as_str())
        {
            let supported: Vec<String> = SUPPORTED_REASONS.iter().map(|s| quote(s)).collect();
            errors.push(rule_error(
                at("reason"),
                "FieldValueNotSupported",
                format!(
                    "Unsupported value: {}: supported values: {}",
                    quote(reason),
                    supported.join(", ")
                ),
            ));
        }
        let mut normalized_field_path = None;
        if !field_path.is_empty() {
            if field_path.trim().is_empty() {
                errors.push(rule_error(
                    at("fieldPath"),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: fieldPath must be non-empty if specified",
                        quote(field_path)
                    ),
                ));
            } else if has_newlines(field_path) {
                errors.push(rule_error(
                    at("fieldPath"),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: fieldPath must not contain line breaks",
                        quote(field_path)
                    ),
                ));
            } else {
                match valid_field_path(field_path, schema) {
                    Ok(p) => normalized_field_path = Some(p),
                    Err(_) => errors.push(rule_error(
                        at("fieldPath"),
                        "FieldValueInvalid",
                        format!("Invalid value: {}: fieldPath must be a valid path", quote(field_path)),
                    )),
                }
            }
        }
        // As the real server, expressions are only compiled when the schema-level checks passed.
        if errors.len() != before {
            continue;
        }
        let program = match ENV.compile(source) {
            Ok(p) => p,
            Err(e) => {
                errors.push(rule_error(
                    at("rule"),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: compilation failed: {}",
                        go_rule(r),
                        cel_go_parse_errors(&e)
                    ),
                ));
                continue;
            }
        };
        let optional_old_self = r["optionalOldSelf"] == true;
        let uses_old_self = match check_expression(&program, schema, resource_root, optional_old_self, true) {
            Ok(uses) => uses,
            Err(msg) => {
                errors.push(rule_error(
                    at("rule"),
                    "FieldValueInvalid",
                    format!("Invalid value: {}: {msg}", go_rule(r)),
                ));
                continue;
            }
        };
        let mut compiled_message = None;
        if !message_expression.trim().is_empty() {
            match ENV.compile(message_expression) {
                Ok(p) => match check_expression(&p, schema, resource_root, false, false) {
                    Ok(_) => compiled_message = Some(p),
                    Err(msg) => errors.push(rule_error(
                        at("messageExpression"),
                        "FieldValueInvalid",
                        format!(
                            "Invalid value: {}: {}",
                            go_rule(r),
                            msg.replace("compilation failed", "messageExpression compilation failed")
                        ),
                    )),
                },
                Err(e) => errors.push(rule_error(
                    at("messageExpression"),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: messageExpression compilation failed: {}",
                        go_rule(r),
                        cel_go_parse_errors(&e)
                    ),
                )),
            }
        }
        if uses_old_self {
            if let Some(p) = uncorrelatable {
                errors.push(rule_error(
                    at("rule"),
                    "FieldValueInvalid",
                    format!(
                        "Invalid value: {}: oldSelf cannot be used on the uncorrelatable portion of the schema within {p}",
                        quote(source)
                    ),
                ));
            }
        } else if r["optionalOldSelf"].is_boolean() {
            errors.push(rule_error(
                at("optionalOldSelf"),
                "FieldValueInvalid",
                format!(
                    "Invalid value: {}: may not be set if oldSelf is not used in rule",
                    r["optionalOldSelf"]
                ),
            ));
        }
        if errors.len() != before {
            continue;
        }
        rules.push(Rule {
            source: source.to_string(),
            message: (!message.trim().is_empty()).then(|| message.trim().to_string()),
            message_expression: compiled_message,
            reason,
            field_path: normalized_field_path,
            uses_old_self,
            optional_old_self,
            program,
        });
    }
    rules
}

/// `ValidFieldPath` of validation.go: a JSONPath of field and map accessors (`.a.b`, `['a.b']`) that
/// names a field of `schema`. Returns the path as `field.Path` prints it.
fn valid_field_path(path: &str, schema: &Value) -> Result<String, String> {
    let mut out = FieldPath::default();
    let mut schema = schema;
    let mut append = |name: &str, schema: &mut &Value| -> Result<(), String> {
        if let Some(props) = schema["properties"].as_object() {
            out = out.child(name);
            *schema = props.get(name).ok_or("does not refer to a valid field")?;
        } else if schema["additionalProperties"].is_object() {
            out = out.key(name);
            *schema = &schema["additionalProperties"];
        } else {
            return Err("does not refer to a valid field".into());
        }
        Ok(())
    };
    let chars: Vec<char> = path.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && !matches!(chars[end], '.' | '[' | ']') {
                    end += 1;
                }
                if end == start {
                    return Err("unexpected end of JSON path".into());
                }
                let name: String = chars[start..end].iter().collect();
                append(&name, &mut schema)?;
                i = end;
            }
            '[' => {
                if chars.get(i + 1) != Some(&'\'') {
                    return Err("expected single quoted string".into());
                }
                let mut j = i + 2;
                let mut name = String::new();
                while j < chars.len() && chars[j] != '\'' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        j += 1;
                    }
                    name.push(chars[j]);
                    j += 1;
                }
                if chars.get(j) != Some(&'\'') || chars.get(j + 1) != Some(&']') {
                    return Err("expected ]".into());
                }
                append(&name, &mut schema)?;
                i = j + 2;
            }
            c => return Err(format!("expected [ or . but got: {c}")),
        }
    }
    Ok(out.0)
}

/// The identifier a property is known by in CEL, or `None` when it cannot be accessed.
fn escape(name: &str) -> Option<String> {
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '_' if chars.peek() == Some(&'_') => {
                chars.next();
                out.push_str("__underscores__");
            }
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// What a name in a rule refers to, for the field-reference check.
#[derive(Clone, Copy)]
enum Bound<'s> {
    /// A value whose schema is known (and whether it is a resource root).
    Typed(&'s Value, bool),
    /// A value of a known scalar CEL type (`int`, `string`, …) without a schema: literals, results.
    Scalar(&'static str),
    /// A value of unknown shape (comprehension accumulators, optionals, map keys).
    Dynamic,
}

impl Bound<'_> {
    /// The CEL type name when it is a known scalar, as cel-go names it in overload errors.
    fn scalar(&self) -> Option<&'static str> {
        match self {
            Bound::Scalar(t) => Some(t),
            Bound::Typed(s, _) if s["x-kubernetes-int-or-string"] != true => match s["type"].as_str() {
                Some("string") if s["format"] == "date-time" => Some("google.protobuf.Timestamp"),
                Some("string") if matches!(s["format"].as_str(), Some("byte" | "duration")) => None,
                Some("string") => Some("string"),
                Some("integer") => Some("int"),
                Some("number") => Some("double"),
                Some("boolean") => Some("bool"),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The result type of the operators and functions whose argument types the checker compares.
fn result_scalar(func: &str, args: &[Bound<'_>]) -> Bound<'static> {
    match func {
        "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" | "_&&_" | "_||_" | "!_" | "@in" | "matches"
        | "startsWith" | "endsWith" | "contains" => Bound::Scalar("bool"),
        "size" | "int" => Bound::Scalar("int"),
        "string" => Bound::Scalar("string"),
        "double" => Bound::Scalar("double"),
        "_+_" | "_-_" | "_*_" | "_/_" | "_%_" => match args.first().and_then(Bound::scalar) {
            Some(t @ ("int" | "double" | "string")) => Bound::Scalar(t),
            _ => Bound::Dynamic,
        },
        _ => Bound::Dynamic,
    }
}

/// Where `oldSelf` sits in the checker's scope (after `self`).
const OLD_SELF_SLOT: usize = 1;

struct Checker<'p> {
    program: &'p Program,
    uses_old_self: bool,
}

impl Checker<'_> {
    fn position(&self, e: &IdedExpr) -> String {
        let source = &self.program.source_info().source;
        let Some((start, _)) = self.program.source_info().offset_for(e.id) else {
            return "<input>:1:1".into();
        };
        let (mut line, mut col) = (1, 1);
        for (i, ch) in source.chars().enumerate() {
            if i as u32 >= start {
                break;
            }
            if ch == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        format!("<input>:{line}:{col}")
    }

    fn error(&self, e: &IdedExpr, msg: &str) -> String {
        format!("compilation failed: ERROR: {}: {msg}", self.position(e))
    }

    /// Walks the keys and values of a map or message literal (their types are not checked).
    fn walk_entries<'s>(
        &mut self,
        entries: &[cel::common::ast::IdedEntryExpr],
        scope: &mut Vec<(String, Bound<'s>)>,
    ) -> Result<(), String> {
        for entry in entries {
            match &entry.expr {
                EntryExpr::StructField(f) => {
                    self.walk(&f.value, scope)?;
                }
                EntryExpr::MapEntry(me) => {
                    self.walk(&me.key, scope)?;
                    self.walk(&me.value, scope)?;
                }
            }
        }
        Ok(())
    }

    /// Walks `e`, checking names against `scope`; returns the schema of `e`'s value when known.
    fn walk<'s>(&mut self, e: &IdedExpr, scope: &mut Vec<(String, Bound<'s>)>) -> Result<Bound<'s>, String> {
        match &e.expr {
            Expr::Ident(name) => {
                if let Some((i, (_, b))) = scope.iter().enumerate().rev().find(|(_, (n, _))| n == name) {
                    // Only the top-level binding is the old object; a macro variable may shadow it.
                    if i == OLD_SELF_SLOT {
                        self.uses_old_self = true;
                    }
                    return Ok(*b);
                }
                if name.starts_with('@') || name.starts_with("__") {
                    return Ok(Bound::Dynamic);
                }
                Err(self.error(e, &format!("undeclared reference to '{name}' (in container '')")))
            }
            Expr::Select(sel) => {
                let operand = self.walk(&sel.operand, scope)?;
                match operand {
                    Bound::Typed(s, root) => field_schema(s, root, &sel.field)
                        .map(|c| Bound::Typed(c, c["x-kubernetes-embedded-resource"] == true))
                        .map_err(|m| self.error(e, &m)),
                    Bound::Scalar(_) | Bound::Dynamic => Ok(Bound::Dynamic),
                }
            }
            Expr::Call(call) => {
                if let Some(t) = &call.target {
                    self.walk(t, scope)?;
                }
                let mut args = Vec::with_capacity(call.args.len());
                for a in &call.args {
                    args.push(self.walk(a, scope)?);
                }
                if call.func_name == cel::common::ast::operators::INDEX
                    && let Some(Bound::Typed(s, _)) = args.first()
                {
                    return Ok(element_schema(s)
                        .map(|c| Bound::Typed(c, c["x-kubernetes-embedded-resource"] == true))
                        .unwrap_or(Bound::Dynamic));
                }
                // cel-go's checker refuses operators whose operand types no overload accepts; the
                // ordering operators accept mixed numbers (CrossTypeNumericComparisons), nothing else.
                let name = call.func_name.as_str();
                if call.target.is_none()
                    && let [a, b] = args.as_slice()
                    && let (Some(ta), Some(tb)) = (a.scalar(), b.scalar())
                    && ta != tb
                {
                    let numeric = |t: &str| matches!(t, "int" | "uint" | "double");
                    let checked = match name {
                        "_==_" | "_!=_" | "_+_" | "_-_" | "_*_" | "_/_" | "_%_" => true,
                        "_<_" | "_<=_" | "_>_" | "_>=_" => !(numeric(ta) && numeric(tb)),
                        _ => false,
                    };
                    if checked && ta != "null_type" && tb != "null_type" {
                        return Err(self.error(
                            e,
                            &format!("found no matching overload for '{name}' applied to '({ta}, {tb})'"),
                        ));
                    }
                }
                Ok(result_scalar(name, &args))
            }
            Expr::Comprehension(c) => {
                let range = self.walk(&c.iter_range, scope)?;
                let accu = self.walk(&c.accu_init, scope)?;
                let (first, second) = match range {
                    Bound::Typed(s, _) if s["type"] == "array" => match c.iter_var2 {
                        // Two-variable forms bind the index first, then the element.
                        Some(_) => (
                            Bound::Dynamic,
                            element_schema(s)
                                .map(|c| Bound::Typed(c, false))
                                .unwrap_or(Bound::Dynamic),
                        ),
                        None => (
                            element_schema(s)
                                .map(|c| Bound::Typed(c, false))
                                .unwrap_or(Bound::Dynamic),
                            Bound::Dynamic,
                        ),
                    },
                    Bound::Typed(s, _) if s["additionalProperties"].is_object() => {
                        (Bound::Dynamic, Bound::Typed(&s["additionalProperties"], false))
                    }
                    _ => (Bound::Dynamic, Bound::Dynamic),
                };
                let depth = scope.len();
                scope.push((c.accu_var.clone(), accu));
                scope.push((c.iter_var.clone(), first));
                if let Some(v2) = &c.iter_var2 {
                    scope.push((v2.clone(), second));
                }
                let r = (|| {
                    self.walk(&c.loop_cond, scope)?;
                    self.walk(&c.loop_step, scope)?;
                    self.walk(&c.result, scope)
                })();
                scope.truncate(depth);
                r.map(|_| Bound::Dynamic)
            }
            Expr::List(l) => {
                for el in &l.elements {
                    self.walk(el, scope)?;
                }
                Ok(Bound::Dynamic)
            }
            Expr::Map(m) => {
                self.walk_entries(&m.entries, scope)?;
                Ok(Bound::Dynamic)
            }
            Expr::Struct(st) => {
                self.walk_entries(&st.entries, scope)?;
                Ok(Bound::Dynamic)
            }
            Expr::Literal(l) => {
                use cel::common::ast::LiteralValue as L;
                Ok(Bound::Scalar(match l {
                    L::Boolean(_) => "bool",
                    L::Bytes(_) => "bytes",
                    L::Double(_) => "double",
                    L::Int(_) => "int",
                    L::Null => "null_type",
                    L::String(_) => "string",
                    L::UInt(_) => "uint",
                }))
            }
            Expr::Unspecified => Ok(Bound::Dynamic),
        }
    }
}

/// The schema of field `name` (as written in CEL, i.e. escaped) of an object with schema `s`;
/// `None` when the schema declares no such field.
fn field_schema<'s>(s: &'s Value, resource_root: bool, name: &str) -> Result<&'s Value, String> {
    static ANY: Value = Value::Null;
    // Of the metadata, rules on a resource root see only these (model.WithTypeAndObjectMeta).
    static META: LazyLock<Value> = LazyLock::new(
        || serde_json::json!({"type": "object", "properties": {"name": {"type": "string"}, "generateName": {"type": "string"}}}),
    );
    if resource_root {
        match name {
            "apiVersion" | "kind" => return Ok(&ANY),
            "metadata" => return Ok(&META),
            _ => {}
        }
    }
    let undefined = || format!("undefined field '{name}'");
    if let Some(props) = s["properties"].as_object() {
        return props
            .iter()
            .find(|(k, _)| escape(k).as_deref() == Some(name))
            .map(|(_, v)| v)
            .ok_or_else(undefined);
    }
    if s["additionalProperties"].is_object() {
        return Ok(&s["additionalProperties"]);
    }
    let scalar = match s["type"].as_str() {
        Some("string") if s["format"] == "date-time" => Some("google.protobuf.Timestamp"),
        Some("string") => Some("string"),
        Some("integer") => Some("int"),
        Some("number") => Some("double"),
        Some("boolean") => Some("bool"),
        Some("array") => Some("list"),
        _ => None,
    };
    if let Some(t) = scalar
        && s["x-kubernetes-int-or-string"] != true
    {
        return Err(format!("type '{t}' does not support field selection"));
    }
    // Untyped (x-kubernetes-preserve-unknown-fields, int-or-string, or no schema): anything goes.
    if s.is_null() || s["type"] != "object" || s["x-kubernetes-preserve-unknown-fields"] == true {
        return Ok(&ANY);
    }
    Err(undefined())
}

/// The schema of the elements of a list or map schema.
fn element_schema(s: &Value) -> Option<&Value> {
    s.get("items")
        .filter(|i| i.is_object())
        .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
}

/// Checks what cel-go's type checker would refuse that the parser does not: references to undeclared
/// variables, to fields the schema does not declare, and (for rules) results that cannot be a bool.
/// Returns whether the expression uses `oldSelf`.
fn check_expression(
    program: &Program,
    schema: &Value,
    resource_root: bool,
    optional_old_self: bool,
    must_be_bool: bool,
) -> Result<bool, String> {
    let mut checker = Checker {
        program,
        uses_old_self: false,
    };
    let this = Bound::Typed(schema, resource_root);
    let old = if optional_old_self { Bound::Dynamic } else { this };
    let mut scope = vec![("self".to_string(), this), ("oldSelf".to_string(), old)];
    checker.walk(program.expression(), &mut scope)?;
    let expr = &program.expression().expr;
    if must_be_bool {
        let non_bool = match expr {
            Expr::Literal(l) => !matches!(l, cel::common::ast::LiteralValue::Boolean(_)),
            Expr::List(_) | Expr::Map(_) | Expr::Struct(_) => true,
            Expr::Call(c) => matches!(
                c.func_name.as_str(),
                "_+_" | "_-_" | "_*_" | "_/_" | "_%_" | "-_" | "size" | "string" | "int" | "uint" | "double"
            ),
            _ => false,
        };
        if non_bool {
            return Err("cel expression must evaluate to a bool".into());
        }
    } else if let Expr::Literal(l) = expr
        && !matches!(l, cel::common::ast::LiteralValue::String(_))
    {
        return Err("messageExpression must evaluate to a string".into());
    }
    Ok(checker.uses_old_self)
}

/// JSON to the CEL value the API server binds for a node (`UnstructuredToVal` in values.go), guided by
/// the schema: `number` is always a double, `date-time` strings are timestamps, properties are
/// reachable by their escaped names, and a resource root shows only `apiVersion`, `kind`,
/// `metadata.name` and `metadata.generateName`.
fn to_cel(v: &Value, s: &Value, resource_root: bool) -> CelValue {
    match v {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            if s["type"] == "number" {
                CelValue::Float(n.as_f64().unwrap_or_default())
            } else if let Some(i) = n.as_i64() {
                CelValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                CelValue::UInt(u)
            } else {
                CelValue::Float(n.as_f64().unwrap_or_default())
            }
        }
        Value::String(st) => {
            if s["format"] == "date-time"
                && let Ok(t) = chrono::DateTime::parse_from_rfc3339(st)
            {
                return CelValue::Timestamp(t);
            }
            CelValue::String(Arc::new(st.clone()))
        }
        Value::Array(items) => {
            let is = &s["items"];
            CelValue::List(Arc::new(
                items
                    .iter()
                    .map(|i| to_cel(i, is, is["x-kubernetes-embedded-resource"] == true))
                    .collect(),
            ))
        }
        Value::Object(m) => {
            let mut out: HashMap<Key, CelValue> = HashMap::with_capacity(m.len());
            if resource_root {
                for k in ["apiVersion", "kind"] {
                    if let Some(Value::String(x)) = m.get(k) {
                        out.insert(Key::String(Arc::new(k.into())), CelValue::String(Arc::new(x.clone())));
                    }
                }
                let mut md: HashMap<Key, CelValue> = HashMap::new();
                for k in ["name", "generateName"] {
                    if let Some(Value::String(x)) = m.get("metadata").and_then(|md| md.get(k)) {
                        md.insert(Key::String(Arc::new(k.into())), CelValue::String(Arc::new(x.clone())));
                    }
                }
                out.insert(
                    Key::String(Arc::new("metadata".into())),
                    CelValue::Map(CelMap { map: Arc::new(md) }),
                );
            }
            if let Some(props) = s["properties"].as_object() {
                for (k, ps) in props {
                    if resource_root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    // Null-valued fields are absent to CEL (`has()` is false).
                    if let (Some(x), Some(name)) = (m.get(k).filter(|x| !x.is_null()), escape(k)) {
                        let embedded = ps["x-kubernetes-embedded-resource"] == true;
                        out.insert(Key::String(Arc::new(name)), to_cel(x, ps, embedded));
                    }
                }
            } else {
                let ap = &s["additionalProperties"];
                for (k, x) in m.iter().filter(|(_, x)| !x.is_null()) {
                    if resource_root && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    let embedded = ap["x-kubernetes-embedded-resource"] == true;
                    out.insert(Key::String(Arc::new(k.clone())), to_cel(x, ap, embedded));
                }
            }
            CelValue::Map(CelMap { map: Arc::new(out) })
        }
    }
}

/// cel-go's wording of an evaluation error (the real server prints cel-go's message).
fn cel_go_error(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        ExecutionError::IndexOutOfBounds(CelValue::Int(i)) => format!("index out of bounds: {i}"),
        ExecutionError::IndexOutOfBounds(CelValue::UInt(i)) => format!("index out of bounds: {i}"),
        ExecutionError::DivisionByZero(_) => "division by zero".into(),
        ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        ExecutionError::Overflow(..) => "integer overflow".into(),
        ExecutionError::NoSuchOverload(_)
        | ExecutionError::UnsupportedBinaryOperator(..)
        | ExecutionError::ValuesNotComparable(..)
        | ExecutionError::UnexpectedType { .. } => "no such overload".into(),
        ExecutionError::FunctionError { message, .. } => message.clone(),
        other => {
            let s = other.to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

/// A `field.Error` turned into a Status cause.
fn cause(reason: &str, field: &FieldPath, body: String) -> Cause {
    Cause {
        reason: reason.to_string(),
        field: field.to_string(),
        message: body,
    }
}

fn invalid(field: &FieldPath, type_name: &str, detail: &str) -> Cause {
    cause(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {}: {detail}", quote(type_name)),
    )
}

impl Rule {
    /// `ruleErrorString`: the message if set, else the rule.
    fn error_string(&self) -> &str {
        self.message.as_deref().unwrap_or(self.source.trim())
    }
}

impl Node {
    fn validate(&self, path: &FieldPath, obj: &Value, old: Option<&Value>, ratchet: Ratchet, out: &mut Vec<Cause>) {
        // Rules only see non-null values; null and absent fields are checked from the parent.
        if obj.is_null() {
            return;
        }
        let old = old.filter(|o| !o.is_null());
        if !self.rules.is_empty() {
            self.validate_expressions(path, obj, old, ratchet, out);
        }
        match obj {
            Value::Array(items) => {
                let Some(item_node) = &self.items else { return };
                let old_items = old.and_then(Value::as_array);
                for (i, it) in items.iter().enumerate() {
                    // oldSelf only for elements of map lists (maplist.go); ratcheting also
                    // correlates set elements by value.
                    let (old_for_rules, old_for_ratchet) = match (&self.list_type, old_items) {
                        (ListType::Map(keys), Some(olds)) => {
                            let found = olds.iter().find(|o| keys.iter().all(|k| o.get(k) == it.get(k)));
                            (found, found)
                        }
                        (ListType::Set, Some(olds)) => (None, olds.iter().find(|o| *o == it)),
                        _ => (None, None),
                    };
                    let r = ratchet.descend(it, old_for_ratchet);
                    item_node.validate(&path.index(i), it, old_for_rules, r, out);
                }
            }
            Value::Object(m) => {
                let old_map = old.and_then(Value::as_object);
                if let Some(ap) = &self.additional {
                    for (k, v) in m {
                        let o = old_map.and_then(|om| om.get(k));
                        ap.validate(&path.key(k), v, o, ratchet.descend(v, o), out);
                    }
                }
                for (k, child) in &self.properties {
                    if let Some(v) = m.get(k) {
                        let o = old_map.and_then(|om| om.get(k));
                        child.validate(&path.child(k), v, o, ratchet.descend(v, o), out);
                    }
                }
            }
            _ => {}
        }
    }

    fn validate_expressions(
        &self,
        path: &FieldPath,
        obj: &Value,
        old: Option<&Value>,
        ratchet: Ratchet,
        out: &mut Vec<Cause>,
    ) {
        let env = Arc::clone(&ENV);
        let this = to_cel(obj, &self.schema, self.resource_root);
        let needs_old = self.rules.iter().any(|r| r.uses_old_self);
        let old_val = match old {
            // Unchanged (every status write leaves spec alone): share the converted value.
            Some(o) if needs_old && o == obj => Some(this.clone()),
            Some(o) if needs_old => Some(to_cel(o, &self.schema, self.resource_root)),
            _ => None,
        };
        let mut ctx = Context::with_env(Arc::clone(&env));
        ctx.add_variable_from_value("self", this.clone());
        if let Some(o) = &old_val {
            ctx.add_variable_from_value("oldSelf", o.clone());
        }
        let mut optional_ctx = None;
        for rule in &self.rules {
            if rule.uses_old_self && old.is_none() && !rule.optional_old_self {
                // Transition rules only run when there is a comparable existing value.
                continue;
            }
            let result = if rule.optional_old_self {
                let octx = optional_ctx.get_or_insert_with(|| {
                    let mut c = Context::with_env(Arc::clone(&env));
                    c.add_variable_from_value("self", this.clone());
                    let opt = match &old_val {
                        Some(o) => OptionalValue::of(o.clone()),
                        None => OptionalValue::none(),
                    };
                    c.add_variable_from_value("oldSelf", CelValue::Opaque(Arc::new(opt)));
                    c
                });
                rule.program.execute(octx)
            } else {
                rule.program.execute(&ctx)
            };
            match result {
                Ok(CelValue::Bool(true)) => continue,
                // The type checker makes anything else impossible upstream; here it is a failure.
                Ok(_) => {}
                Err(e) => {
                    let msg = cel_go_error(&e);
                    let detail = if msg.starts_with("no such overload") {
                        format!(
                            "'{msg}': call arguments did not match a supported operator, function or macro signature for rule: {}",
                            rule.error_string()
                        )
                    } else {
                        format!("{msg} evaluating rule: {}", rule.error_string())
                    };
                    out.push(invalid(path, &self.type_name, &detail));
                    continue;
                }
            }
            if !rule.uses_old_self && ratchet.equal {
                tracing::debug!(field = %path, rule = %rule.source, "unchanged value ratcheted past a failing rule");
                continue;
            }
            let field = match &rule.field_path {
                Some(p) => FieldPath(if path.0.is_empty() {
                    p.clone()
                } else {
                    format!("{}.{p}", path.0)
                }),
                None => path.clone(),
            };
            let mut detail = None;
            if let Some(me) = &rule.message_expression {
                match me.execute(&ctx) {
                    Ok(CelValue::String(s)) => {
                        let t = s.trim();
                        // An empty or multi-line message falls back to the rule's message.
                        if !t.is_empty() && !has_newlines(t) && t.len() <= 5 * 1024 {
                            detail = Some(t.to_string());
                        }
                    }
                    Ok(_) => tracing::debug!("messageExpression failed to convert to string"),
                    Err(e) => tracing::debug!(error = %e, "messageExpression evaluation failed"),
                }
            }
            let detail = detail.unwrap_or_else(|| match &rule.message {
                Some(m) => m.clone(),
                None => format!("failed rule: {}", rule.error_string()),
            });
            out.push(match rule.reason.as_deref() {
                Some("FieldValueForbidden") => cause("FieldValueForbidden", &field, format!("Forbidden: {detail}")),
                Some("FieldValueRequired") => cause("FieldValueRequired", &field, format!("Required value: {detail}")),
                Some("FieldValueDuplicate") => cause(
                    "FieldValueDuplicate",
                    &field,
                    format!("Duplicate value: {}", quote(&self.type_name)),
                ),
                _ => invalid(&field, &self.type_name, &detail),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema_with(spec_props: Value, spec_rules: Value) -> Value {
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": spec_props, "x-kubernetes-validations": spec_rules},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }})
    }

    fn obj(spec: Value) -> Value {
        json!({"apiVersion": "g.io/v1", "kind": "Thing", "metadata": {"name": "x"}, "spec": spec})
    }

    fn compile(schema: &Value) -> Validator {
        match Validator::compile(schema, "") {
            Ok(Some(v)) => v,
            Ok(None) => panic!("no rules"),
            Err(e) => panic!("{e:?}"),
        }
    }

    fn messages(c: &[Cause]) -> Vec<String> {
        c.iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn immutable_field_with_self_equals_old_self() {
        let s = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "requester": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "requester is immutable"}]}
        }}}});
        let v = compile(&s);
        // Create: a transition rule does not run.
        assert!(v.validate(&obj(json!({"requester": "a"})), None).is_empty());
        let old = obj(json!({"requester": "a"}));
        assert!(v.validate(&obj(json!({"requester": "a"})), Some(&old)).is_empty());
        let c = v.validate(&obj(json!({"requester": "b"})), Some(&old));
        assert_eq!(
            messages(&c),
            vec!["spec.requester: Invalid value: \"string\": requester is immutable"]
        );
        assert_eq!(c[0].reason, "FieldValueInvalid");
    }

    #[test]
    fn set_once_allows_first_set_but_not_change() {
        let s = schema_with(
            json!({"decision": {"type": "string"}}),
            json!([{"rule": "!has(oldSelf.decision) || (has(self.decision) && self.decision == oldSelf.decision)", "message": "decision is final"}]),
        );
        let v = compile(&s);
        let unset = obj(json!({}));
        let set = obj(json!({"decision": "Approved"}));
        assert!(v.validate(&set, Some(&unset)).is_empty());
        assert!(v.validate(&set, Some(&set)).is_empty());
        let c = v.validate(&obj(json!({"decision": "Denied"})), Some(&set));
        assert_eq!(messages(&c), vec!["spec: Invalid value: \"object\": decision is final"]);
        let c = v.validate(&unset, Some(&set));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn lists_may_only_grow_and_bounds_hold() {
        let s = schema_with(
            json!({
                "approvals": {"type": "array", "items": {"type": "string"},
                    "x-kubernetes-validations": [{"rule": "self.size() >= oldSelf.size()", "message": "approvals are append-only"}]},
                "ttl": {"type": "integer", "x-kubernetes-validations": [{"rule": "self <= 604800"}]}
            }),
            json!([]),
        );
        let v = compile(&s);
        let old = obj(json!({"approvals": ["a"], "ttl": 10}));
        assert!(
            v.validate(&obj(json!({"approvals": ["a", "b"], "ttl": 604800})), Some(&old))
                .is_empty()
        );
        let c = v.validate(&obj(json!({"approvals": [], "ttl": 604801})), Some(&old));
        assert_eq!(
            messages(&c),
            vec![
                "spec.approvals: Invalid value: \"array\": approvals are append-only",
                "spec.ttl: Invalid value: \"integer\": failed rule: self <= 604800",
            ]
        );
        // On create the bound applies, the transition rule does not.
        let c = v.validate(&obj(json!({"approvals": [], "ttl": 604801})), None);
        assert_eq!(
            messages(&c),
            vec!["spec.ttl: Invalid value: \"integer\": failed rule: self <= 604800"]
        );
    }

    #[test]
    fn message_expression_field_path_and_reason() {
        let s = schema_with(
            json!({"min": {"type": "integer"}, "max": {"type": "integer"}}),
            json!([
                {"rule": "self.min <= self.max", "messageExpression": "'min ' + string(self.min) + ' exceeds max ' + string(self.max)", "fieldPath": ".min"},
                {"rule": "self.max < 100", "message": "too big", "reason": "FieldValueForbidden", "fieldPath": ".max"},
                {"rule": "has(self.min)", "message": "min is needed", "reason": "FieldValueRequired"},
                {"rule": "self.min != self.max", "reason": "FieldValueDuplicate"},
                {"rule": "self.max > 0", "messageExpression": "''", "message": "fallback"}
            ]),
        );
        let v = compile(&s);
        let c = v.validate(&obj(json!({"min": 200, "max": 150})), None);
        assert_eq!(
            messages(&c),
            vec![
                "spec.min: Invalid value: \"object\": min 200 exceeds max 150",
                "spec.max: Forbidden: too big",
            ]
        );
        assert_eq!(c[1].reason, "FieldValueForbidden");
        let c = v.validate(&obj(json!({"max": 0})), None);
        let m = messages(&c);
        assert!(m.contains(&"spec: Required value: min is needed".to_string()), "{m:?}");
        // self.min is absent: a runtime error in the real server's words.
        assert!(
            m.contains(
                &"spec: Invalid value: \"object\": no such key: min evaluating rule: self.min <= self.max".to_string()
            ),
            "{m:?}"
        );
        assert!(
            m.contains(&"spec: Invalid value: \"object\": fallback".to_string()),
            "{m:?}"
        );
        let c = v.validate(&obj(json!({"min": 5, "max": 5})), None);
        assert_eq!(messages(&c), vec!["spec: Duplicate value: \"object\""]);
        assert_eq!(c[0].reason, "FieldValueDuplicate");
    }

    #[test]
    fn optional_old_self_runs_on_create() {
        let s = schema_with(
            json!({"name": {"type": "string"}}),
            json!([{"rule": "oldSelf.hasValue() || self.name.startsWith('new-')", "optionalOldSelf": true, "message": "new objects need a new- name"}]),
        );
        let v = compile(&s);
        let c = v.validate(&obj(json!({"name": "x"})), None);
        assert_eq!(
            messages(&c),
            vec!["spec: Invalid value: \"object\": new objects need a new- name"]
        );
        assert!(v.validate(&obj(json!({"name": "new-x"})), None).is_empty());
        let old = obj(json!({"name": "x"}));
        assert!(v.validate(&obj(json!({"name": "y"})), Some(&old)).is_empty());
    }

    #[test]
    fn rules_skip_absent_and_null_values() {
        let s = schema_with(
            json!({"ttl": {"type": "integer", "nullable": true, "x-kubernetes-validations": [{"rule": "self > 0"}]}}),
            json!([]),
        );
        let v = compile(&s);
        assert!(v.validate(&obj(json!({})), None).is_empty());
        assert!(v.validate(&obj(json!({"ttl": null})), None).is_empty());
        assert_eq!(v.validate(&obj(json!({"ttl": 0})), None).len(), 1);
        // A null field is absent to the rules of its parent.
        let s = schema_with(
            json!({"note": {"type": "string", "nullable": true}}),
            json!([{"rule": "!has(self.note)", "message": "no note"}]),
        );
        let v = compile(&s);
        assert!(v.validate(&obj(json!({"note": null})), None).is_empty());
        assert_eq!(v.validate(&obj(json!({"note": "x"})), None).len(), 1);
    }

    #[test]
    fn root_rules_see_name_and_report_nil_path() {
        let s = json!({"type": "object", "x-kubernetes-validations": [
            {"rule": "self.metadata.name.startsWith('ar-')", "message": "name must start with ar-"},
            {"rule": "self.spec.n > 1", "fieldPath": ".spec.n"}
        ], "properties": {"spec": {"type": "object", "properties": {"n": {"type": "integer"}}}}});
        let v = compile(&s);
        let c = v.validate(&obj(json!({"n": 1})), None);
        assert_eq!(
            messages(&c),
            vec![
                "<nil>: Invalid value: \"object\": name must start with ar-",
                "spec.n: Invalid value: \"object\": failed rule: self.spec.n > 1",
            ]
        );
    }

    #[test]
    fn items_and_additional_properties_have_rules() {
        let s = schema_with(
            json!({
                "names": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self != 'kube-system'", "message": "excluded"}]}},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() < 4"}]}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}},
                        "x-kubernetes-validations": [{"rule": "self.port == oldSelf.port", "message": "port is immutable"}]}}
            }),
            json!([]),
        );
        let v = compile(&s);
        let old = obj(json!({"ports": [{"name": "a", "port": 1}]}));
        let c = v.validate(
            &obj(json!({"names": ["a", "kube-system"], "labels": {"x": "long"}, "ports": [{"name": "b", "port": 9}, {"name": "a", "port": 2}]})),
            Some(&old),
        );
        assert_eq!(
            messages(&c),
            vec![
                "spec.labels[x]: Invalid value: \"string\": failed rule: self.size() < 4",
                "spec.names[1]: Invalid value: \"string\": excluded",
                "spec.ports[1]: Invalid value: \"object\": port is immutable",
            ]
        );
    }

    #[test]
    fn unchanged_invalid_values_ratchet() {
        let s = schema_with(
            json!({"ttl": {"type": "integer", "x-kubernetes-validations": [{"rule": "self <= 100"}]}, "note": {"type": "string"}}),
            json!([]),
        );
        let v = compile(&s);
        let old = obj(json!({"ttl": 500, "note": "a"}));
        // ttl did not change: its (now) failing rule does not block an edit elsewhere.
        assert!(
            v.validate(&obj(json!({"ttl": 500, "note": "b"})), Some(&old))
                .is_empty()
        );
        assert_eq!(v.validate(&obj(json!({"ttl": 501, "note": "a"})), Some(&old)).len(), 1);
    }

    #[test]
    fn escaped_property_names_and_timestamps() {
        let s = schema_with(
            json!({"max-ttl": {"type": "integer"}, "namespace": {"type": "string"},
                   "expiresAt": {"type": "string", "format": "date-time"}, "ratio": {"type": "number"}}),
            json!([
                {"rule": "self.max__dash__ttl > 0 && self.__namespace__ != ''"},
                {"rule": "self.expiresAt > timestamp('2020-01-01T00:00:00Z')"},
                {"rule": "self.ratio == 1.0"}
            ]),
        );
        let v = compile(&s);
        let good = obj(json!({"max-ttl": 1, "namespace": "a", "expiresAt": "2030-01-01T00:00:00Z", "ratio": 1}));
        assert_eq!(messages(&v.validate(&good, None)), Vec::<String>::new());
        let bad = obj(json!({"max-ttl": 1, "namespace": "a", "expiresAt": "2010-01-01T00:00:00Z", "ratio": 1}));
        assert_eq!(v.validate(&bad, None).len(), 1);
    }

    fn compile_err(schema: &Value) -> Vec<RuleError> {
        match Validator::compile(schema, "") {
            Err(e) => e,
            Ok(_) => panic!("compiled"),
        }
    }

    #[test]
    fn invalid_rules_are_refused() {
        let e = compile_err(&schema_with(
            json!({"a": {"type": "string"}}),
            json!([{"rule": "self.a =="}]),
        ));
        assert_eq!(e[0].field, "properties[spec].x-kubernetes-validations[0].rule");
        assert!(
            e[0].message.contains("compilation failed: ERROR: <input>:1:"),
            "{}",
            e[0].message
        );
        assert!(
            e[0].message
                .starts_with("Invalid value: apiextensions.ValidationRule{Rule:\"self.a ==\""),
            "{}",
            e[0].message
        );

        let e = compile_err(&schema_with(
            json!({"a": {"type": "string"}}),
            json!([{"rule": "self.b == 'x'"}]),
        ));
        assert!(e[0].message.contains("undefined field 'b'"), "{}", e[0].message);
        let e = compile_err(&schema_with(
            json!({"a": {"type": "string"}}),
            json!([{"rule": "other == 1"}]),
        ));
        assert!(
            e[0].message.contains("undeclared reference to 'other'"),
            "{}",
            e[0].message
        );
        let e = compile_err(&schema_with(
            json!({"a": {"type": "string"}}),
            json!([{"rule": "self.a + 'x'"}]),
        ));
        assert!(
            e[0].message.ends_with("cel expression must evaluate to a bool"),
            "{}",
            e[0].message
        );
        // Operand types no overload accepts, as cel-go's checker reports them.
        let e = compile_err(&schema_with(
            json!({"n": {"type": "integer"}}),
            json!([{"rule": "self.n == '5'"}]),
        ));
        assert!(
            e[0].message
                .contains("found no matching overload for '_==_' applied to '(int, string)'"),
            "{}",
            e[0].message
        );
        let e = compile_err(&schema_with(
            json!({"n": {"type": "number"}}),
            json!([{"rule": "self.n + 1 > 0"}]),
        ));
        assert!(
            e[0].message.contains("'_+_' applied to '(double, int)'"),
            "{}",
            e[0].message
        );
        // Mixed numbers may be ordered; null may be compared; sizes are ints.
        assert!(
            Validator::compile(
                &schema_with(
                    json!({"n": {"type": "number"}, "s": {"type": "string", "nullable": true}}),
                    json!([{"rule": "self.n < 5 && self.s != null && self.s.size() <= 10 && size(self.s) + 1 > 1"}]),
                ),
                ""
            )
            .is_ok()
        );
        let e = compile_err(&schema_with(json!({"a": {"type": "string"}}), json!([{"rule": ""}])));
        assert_eq!(e[0].message, "Required value: rule is not specified");
        let e = compile_err(&schema_with(
            json!({"a": {"type": "string"}}),
            json!([{"rule": "self.a == 'x'", "optionalOldSelf": true}]),
        ));
        assert_eq!(
            e[0].field,
            "properties[spec].x-kubernetes-validations[0].optionalOldSelf"
        );
        assert_eq!(
            e[0].message,
            "Invalid value: true: may not be set if oldSelf is not used in rule"
        );
        let e = compile_err(&schema_with(
            json!({"a": {"type": "string"}}),
            json!([{"rule": "self.a == 'x'", "reason": "Nope", "fieldPath": ".zzz"}]),
        ));
        assert_eq!(e.len(), 2, "{e:?}");
        // oldSelf is meaningless for elements of an atomic list.
        let e = compile_err(&schema_with(
            json!({"xs": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf"}]}}}),
            json!([]),
        ));
        assert!(
            e[0].message
                .contains("uncorrelatable portion of the schema within properties[spec].properties[xs]"),
            "{}",
            e[0].message
        );
        // Comprehension variables are declared inside their macro.
        assert!(Validator::compile(&schema_with(
            json!({"xs": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}}),
            json!([{"rule": "self.xs.all(x, x.n != '')"}]),
            ),
            ""
        )
        .is_ok());
        let e = compile_err(&schema_with(
            json!({"xs": {"type": "array", "items": {"type": "object", "properties": {"n": {"type": "string"}}}}}),
            json!([{"rule": "self.xs.all(x, x.m != '')"}]),
        ));
        assert!(e[0].message.contains("undefined field 'm'"), "{}", e[0].message);
    }

    /// A schema shaped like k8s-janus's AccessRequest: immutable fields, set-once decisions, an
    /// append-only list of objects, bounds.
    fn access_request_like() -> Value {
        let immutable = |m: &str| json!([{"rule": "self == oldSelf", "message": m}]);
        let once = |f: &str| json!({"rule": format!("!has(oldSelf.{f}) || (has(self.{f}) && self.{f} == oldSelf.{f})"), "message": format!("{f} is final")});
        json!({"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "requester": {"type": "string", "x-kubernetes-validations": immutable("requester is immutable")},
                "cluster": {"type": "string", "x-kubernetes-validations": immutable("cluster is immutable")},
                "namespaces": {"type": "array", "items": {"type": "string"}, "x-kubernetes-validations": immutable("namespaces are immutable")},
                "ttlSeconds": {"type": "integer", "x-kubernetes-validations": [{"rule": "self > 0 && self <= 604800"}]},
                "approval": {"type": "object", "properties": {"by": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}},
                "denial": {"type": "object", "properties": {"by": {"type": "string"}}},
                "extensions": {"type": "array", "items": {"type": "object", "properties": {"by": {"type": "string"}, "seconds": {"type": "integer"}}}}
            }, "x-kubernetes-validations": [
                once("approval"), once("denial"),
                {"rule": "!has(oldSelf.extensions) || (has(self.extensions) && self.extensions == oldSelf.extensions + self.extensions.filter(e, !(e in oldSelf.extensions)))", "message": "extensions are append-only"},
                {"rule": "!(has(self.approval) && has(self.denial))", "message": "approved or denied, not both"}
            ]},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }})
    }

    #[test]
    fn access_request_like_rules_and_cost() {
        let v = compile(&access_request_like());
        let old = obj(
            json!({"requester": "a@x", "cluster": "c1", "namespaces": ["n1", "n2"], "ttlSeconds": 3600,
            "approval": {"by": "b@x", "at": "2026-01-01T00:00:00Z"}, "extensions": [{"by": "b@x", "seconds": 60}]}),
        );
        let mut grown = old.clone();
        grown["spec"]["extensions"] = json!([{"by": "b@x", "seconds": 60}, {"by": "c@x", "seconds": 30}]);
        assert_eq!(messages(&v.validate(&grown, Some(&old))), Vec::<String>::new());
        let mut rewritten = old.clone();
        rewritten["spec"]["extensions"] = json!([{"by": "b@x", "seconds": 6000}]);
        assert_eq!(
            messages(&v.validate(&rewritten, Some(&old))),
            vec!["spec: Invalid value: \"object\": extensions are append-only"]
        );
        let mut both = old.clone();
        both["spec"]["denial"] = json!({"by": "d@x"});
        both["spec"]["namespaces"] = json!(["n1", "kube-system"]);
        assert_eq!(
            messages(&v.validate(&both, Some(&old))),
            vec![
                "spec: Invalid value: \"object\": approved or denied, not both",
                "spec.namespaces: Invalid value: \"array\": namespaces are immutable",
            ]
        );
        // Compiled once: evaluating all the rules of a write stays far below a millisecond in release
        // builds; this bound (unoptimised build, shared CI machine) only catches re-parsing per request.
        let n = 500;
        let start = std::time::Instant::now();
        for _ in 0..n {
            assert!(v.validate(&grown, Some(&old)).is_empty());
        }
        let per = start.elapsed() / n;
        eprintln!("CEL validation of an AccessRequest-like object: {per:?} per write");
        assert!(per < std::time::Duration::from_millis(5), "{per:?} per write");
    }

    #[test]
    fn standard_library_extensions_and_optionals_are_available() {
        let s = schema_with(
            json!({"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}, "n": {"type": "integer"}}),
            json!([
                {"rule": "self.name.lowerAscii().startsWith('ab') && self.name.matches('^[A-Za-z]+$')"},
                {"rule": "self.tags.sort() == ['a', 'b'] && self.tags.exists_one(t, t == 'a')"},
                {"rule": "math.greatest(self.n, 3) == self.n"},
                {"rule": "oldSelf.orValue(self).n <= self.n", "optionalOldSelf": true},
                {"rule": "!oldSelf.hasValue() || oldSelf.value().name == self.name", "optionalOldSelf": true}
            ]),
        );
        let v = compile(&s);
        let good = obj(json!({"name": "ABc", "tags": ["b", "a"], "n": 5}));
        assert_eq!(messages(&v.validate(&good, None)), Vec::<String>::new());
        assert_eq!(messages(&v.validate(&good, Some(&good))), Vec::<String>::new());
        let bad = obj(json!({"name": "ABd", "tags": ["b", "a"], "n": 4}));
        assert_eq!(
            v.validate(&bad, Some(&good)).len(),
            2,
            "{:?}",
            messages(&v.validate(&bad, Some(&good)))
        );
    }

    #[test]
    fn field_paths_normalize() {
        let s = json!({"type": "object", "properties": {"a": {"type": "object", "properties": {"b.c": {"type": "string"}}},
            "m": {"type": "object", "additionalProperties": {"type": "string"}}}});
        assert_eq!(valid_field_path(".a['b.c']", &s).as_deref(), Ok("a.b.c"));
        assert_eq!(valid_field_path(".m.k", &s).as_deref(), Ok("m[k]"));
        assert!(valid_field_path(".x", &s).is_err());
        assert!(valid_field_path("a", &s).is_err());
    }
}
