//! Checking a stage's `with` table against the JSON Schema its plugin
//! publishes in `describe()`, before anything runs.
//!
//! The keywords plugin configs use most (`type`, `properties`, `required`,
//! `additionalProperties`, `items`, `enum`, `minimum`, `maximum`) are
//! checked here, so their errors can say what a pipeline author needs (the
//! plugin's settings by name, with a suggestion). Every other keyword
//! (`pattern`, `oneOf`, `anyOf`, `const`, `minLength`, `format`, `$ref`
//! within the schema, …) is checked by the `jsonschema` crate, which never
//! fetches anything (no network or file resolution is built in). Strings
//! holding `${{ ... }}` are only known at run time, so they pass any check,
//! as does anything that contains one.

use serde_json::Value;

/// One way the config does not fit the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    /// Keys (and `[i]` indices) from the `with` table down to the problem.
    pub path: Vec<String>,
    /// What is wrong.
    pub message: String,
    /// Names that would have been accepted here, for suggestions.
    pub expected: Vec<String>,
}

impl SchemaError {
    /// `with.a.b[2]`.
    pub fn location(&self) -> String {
        let mut out = String::from("with");
        for p in &self.path {
            if p.starts_with('[') {
                out.push_str(p);
            } else {
                out.push('.');
                out.push_str(p);
            }
        }
        out
    }
}

/// The top-level settings a schema marks as shell text
/// (`"x-weir-shell": true`): weir hands their expressions to the shell as
/// data (`weir_pipeline::plan::shell`).
pub fn shell_keys(schema: &str) -> Vec<String> {
    let Ok(schema) = serde_json::from_str::<Value>(schema) else {
        return Vec::new();
    };
    schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .filter(|(_, p)| p.get("x-weir-shell") == Some(&Value::Bool(true)))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Every place `value` breaks `schema`. An unparsable schema is the
/// plugin's bug and checks nothing (the plugin still validates at run time).
pub fn check(schema: &str, value: &Value) -> Vec<SchemaError> {
    let Ok(schema) = serde_json::from_str::<Value>(schema) else {
        return Vec::new();
    };
    let mut errors = Vec::new();
    walk(&schema, value, &mut Vec::new(), &mut errors);
    errors.extend(the_rest(&schema, value));
    errors
}

/// Keywords [`walk`] checks, with its own messages.
const OWN: [&str; 6] = [
    "type",
    "enum",
    "minimum",
    "maximum",
    "required",
    "additionalProperties",
];

/// What the full validator finds that [`walk`] does not check. A schema
/// it cannot compile (another draft's syntax, an outside `$ref`) adds
/// nothing: the plugin still validates at run time.
fn the_rest(schema: &Value, value: &Value) -> Vec<SchemaError> {
    let Ok(validator) = jsonschema::validator_for(schema) else {
        return Vec::new();
    };
    validator
        .iter_errors(value)
        // A keyword of ours, or a `false` schema reached through one
        // (`additionalProperties: false` reports as the false schema).
        .filter(|e| {
            let through = e.schema_path().as_str().rsplit('/').next().unwrap_or_default();
            !OWN.contains(&e.kind().keyword()) && !OWN.contains(&through)
        })
        .filter_map(|e| {
            let path: Vec<String> = e
                .instance_path()
                .iter()
                .map(|segment| match segment {
                    jsonschema::paths::LocationSegment::Property(p) => p.into_owned(),
                    jsonschema::paths::LocationSegment::Index(i) => format!("[{i}]"),
                })
                .collect();
            let at = value.pointer(e.instance_path().as_str())?;
            (!holds_expression(at)).then(|| SchemaError {
                path,
                message: format!("does not fit the plugin's schema: {e}"),
                expected: Vec::new(),
            })
        })
        .collect()
}

/// Whether `v` is, or contains, a `${{ ... }}` string.
fn holds_expression(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("${{"),
        Value::Array(items) => items.iter().any(holds_expression),
        Value::Object(m) => m.values().any(holds_expression),
        _ => false,
    }
}

fn walk(schema: &Value, value: &Value, path: &mut Vec<String>, errors: &mut Vec<SchemaError>) {
    let Some(schema) = schema.as_object() else { return };
    if value.as_str().is_some_and(|s| s.contains("${{")) {
        return;
    }
    let err = |path: &Vec<String>, message: String, expected: Vec<String>| SchemaError {
        path: path.clone(),
        message,
        expected,
    };
    if let Some(ty) = schema.get("type") {
        let allowed: Vec<&str> = match ty {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !allowed.is_empty() && !allowed.iter().any(|t| is_type(value, t)) {
            errors.push(err(
                path,
                format!(
                    "must be {}, not {}",
                    allowed
                        .iter()
                        .map(|t| article(t))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    describe(value)
                ),
                Vec::new(),
            ));
            return;
        }
    }
    if let Some(Value::Array(options)) = schema.get("enum")
        && !options.contains(value)
    {
        let names: Vec<String> = options.iter().map(|o| o.to_string()).collect();
        errors.push(err(
            path,
            format!("must be one of {}, not {value}", names.join(", ")),
            names,
        ));
    }
    if let (Some(n), Some(min)) = (value.as_f64(), schema.get("minimum").and_then(Value::as_f64))
        && n < min
    {
        errors.push(err(path, format!("must be at least {min}, not {n}"), Vec::new()));
    }
    if let (Some(n), Some(max)) = (value.as_f64(), schema.get("maximum").and_then(Value::as_f64))
        && n > max
    {
        errors.push(err(path, format!("must be at most {max}, not {n}"), Vec::new()));
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        let names: Vec<String> = props.map(|p| p.keys().cloned().collect()).unwrap_or_default();
        if let Some(Value::Array(required)) = schema.get("required") {
            for r in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(r) {
                    path.push(r.to_string());
                    errors.push(err(path, "is required but missing".into(), Vec::new()));
                    path.pop();
                }
            }
        }
        for (k, v) in obj {
            path.push(k.clone());
            match props.and_then(|p| p.get(k)) {
                Some(sub) => walk(sub, v, path, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(err(
                        path,
                        if names.is_empty() {
                            "is not a setting of this plugin, which takes no settings".to_string()
                        } else {
                            format!(
                                "is not a setting of this plugin; its settings are {}",
                                names
                                    .iter()
                                    .map(|n| format!("`{n}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        },
                        names.clone(),
                    )),
                    Some(extra @ Value::Object(_)) => walk(extra, v, path, errors),
                    _ => {}
                },
            }
            path.pop();
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            path.push(format!("[{i}]"));
            walk(items, v, path, errors);
            path.pop();
        }
    }
}

fn is_type(v: &Value, t: &str) -> bool {
    match t {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => true,
    }
}

fn article(t: &str) -> String {
    match t {
        "object" => "a table".into(),
        "array" => "a list".into(),
        "integer" => "an integer".into(),
        other => format!("a {other}"),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Object(_) => "a table".into(),
        Value::Array(_) => "a list".into(),
        Value::String(s) => format!("the string {s:?}"),
        Value::Number(n) => format!("the number {n}"),
        Value::Bool(b) => format!("`{b}`"),
        Value::Null => "nothing".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCHEMA: &str = r#"{"type":"object","required":["paths"],"additionalProperties":false,
        "properties":{"paths":{"type":"array","items":{"type":"string"}},"level":{"enum":["low","high"]},
        "max":{"type":"integer","minimum":1}}}"#;

    #[test]
    fn accepts_a_fitting_config() {
        assert_eq!(check(SCHEMA, &json!({"paths": ["a"], "max": 3})), vec![]);
    }

    #[test]
    fn names_each_problem_with_its_path() {
        let errors = check(
            SCHEMA,
            &json!({"path": "a", "max": 0, "level": "mid", "paths": [1]}),
        );
        let got: Vec<(String, String)> = errors.iter().map(|e| (e.location(), e.message.clone())).collect();
        assert_eq!(
            got,
            vec![
                (
                    "with.level".into(),
                    "must be one of \"low\", \"high\", not \"mid\"".into()
                ),
                ("with.max".into(), "must be at least 1, not 0".into()),
                (
                    "with.path".into(),
                    "is not a setting of this plugin; its settings are `level`, `max`, `paths`".into()
                ),
                (
                    "with.paths[0]".into(),
                    "must be a string, not the number 1".into()
                ),
            ]
        );
    }

    #[test]
    fn keywords_beyond_the_common_ones_are_checked_too() {
        let schema = r#"{"type":"object","properties":{
            "name":{"type":"string","pattern":"^[a-z]+$"},
            "mode":{"oneOf":[{"const":"fast"},{"type":"integer"}]},
            "tags":{"type":"array","minItems":1}}}"#;
        let errors = check(schema, &json!({"name": "Bad Name", "mode": "slow", "tags": []}));
        let mut got: Vec<String> = errors.iter().map(SchemaError::location).collect();
        got.sort();
        assert_eq!(got, ["with.mode", "with.name", "with.tags"], "{errors:?}");
        let name = errors.iter().find(|e| e.location() == "with.name").expect("name");
        assert!(name.message.contains("^[a-z]+$"), "{}", name.message);
        // An expression is known only at run time, in any keyword's sight.
        assert_eq!(
            check(
                schema,
                &json!({"name": "${{ stages.a.outputs.n }}", "mode": "${{ stages.a.outputs.m }}"})
            ),
            vec![]
        );
        assert_eq!(
            check(schema, &json!({"name": "ok", "mode": 3, "tags": ["x"]})),
            vec![]
        );
    }

    #[test]
    fn a_closed_table_is_reported_once() {
        let errors = check(
            r#"{"type":"object","additionalProperties":false}"#,
            &json!({"x": 1}),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
    }

    #[test]
    fn a_schema_that_points_outside_itself_fetches_nothing() {
        let schema = r#"{"type":"object","properties":{"x":{"$ref":"https://example.com/s.json"}}}"#;
        assert_eq!(check(schema, &json!({"x": 1})), vec![]);
    }

    #[test]
    fn missing_required_and_expressions() {
        let errors = check(SCHEMA, &json!({"max": "${{ stages.a.outputs.n }}"}));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].location(), "with.paths");
        assert_eq!(errors[0].message, "is required but missing");
    }
}
