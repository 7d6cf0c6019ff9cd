//! The OpenAPI v3 checks an API server makes of a custom resource against its CRD's
//! structural schema before the CEL rules run: types, required fields, enums, bounds,
//! patterns, unknown fields (refused, as `kubectl apply` does with its default strict
//! field validation), `oneOf`, and keys of `x-kubernetes-list-type: map` lists.
//!
//! No kube-apiserver can be installed on these machines; this stands in for its schema
//! validation in the example tests, and the CEL rules are evaluated by kube's `cel`
//! feature. It covers the keywords a structural schema may use; `format` is not checked
//! (the API server checks few formats, and ours are numeric widths).

use serde_json::Value;

/// Every way `value` breaks `schema`, as `path: problem`; empty when it conforms.
pub fn problems(schema: &Value, value: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, value, "", Place::Root, &mut out);
    out
}

/// Where a schema node is: unknown fields are checked against the fields a node
/// specifies, except at the root (apiVersion, kind, metadata are the API server's) and
/// in a branch of allOf/anyOf/oneOf/not, which a structural schema lets only constrain
/// fields specified outside it.
#[derive(Clone, Copy, PartialEq)]
enum Place {
    Root,
    Field,
    Junctor,
}

fn walk(schema: &Value, value: &Value, path: &str, place: Place, out: &mut Vec<String>) {
    let at = if path.is_empty() { "<root>" } else { path };
    let flag = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
    if value.is_null() {
        if !flag("nullable") {
            out.push(format!("{at}: must not be null"));
        }
        return;
    }
    if flag("x-kubernetes-int-or-string") {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            out.push(format!("{at}: must be an integer or a string"));
        }
        return;
    }
    if let Some(ty) = schema.get("type").and_then(Value::as_str) {
        let ok = match ty {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            _ => true,
        };
        if !ok {
            out.push(format!("{at}: must be of type {ty}, is {value}"));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        out.push(format!("{at}: {value} is not one of {}", Value::Array(allowed.clone())));
    }
    bounds(schema, value, at, out);
    match value {
        Value::Object(fields) => object(schema, fields, path, place, out),
        Value::Array(items) => array(schema, items, path, place, out),
        _ => {}
    }
    junctors(schema, value, path, out);
}

fn bounds(schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let num = |k: &str| schema.get(k).and_then(Value::as_f64);
    let count = |k: &str| schema.get(k).and_then(Value::as_u64).map(|n| n as usize);
    if let Some(n) = value.as_f64() {
        let exclusive = |k: &str| schema.get(k).and_then(Value::as_bool) == Some(true);
        if let Some(min) = num("minimum")
            && (n < min || (exclusive("exclusiveMinimum") && n == min))
        {
            out.push(format!("{at}: {n} is below the minimum {min}"));
        }
        if let Some(max) = num("maximum")
            && (n > max || (exclusive("exclusiveMaximum") && n == max))
        {
            out.push(format!("{at}: {n} is above the maximum {max}"));
        }
    }
    if let Some(s) = value.as_str() {
        let len = s.chars().count();
        if count("minLength").is_some_and(|min| len < min) {
            out.push(format!("{at}: {s:?} is shorter than minLength {}", schema["minLength"]));
        }
        if count("maxLength").is_some_and(|max| len > max) {
            out.push(format!("{at}: longer than maxLength {}", schema["maxLength"]));
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match regex::Regex::new(pattern) {
                Ok(re) if re.is_match(s) => {}
                Ok(_) => out.push(format!("{at}: {s:?} does not match the pattern {pattern}")),
                Err(e) => out.push(format!("{at}: the schema's pattern {pattern} does not compile: {e}")),
            }
        }
    }
    if let Some(items) = value.as_array() {
        if count("minItems").is_some_and(|min| items.len() < min) {
            out.push(format!("{at}: fewer than minItems {} items", schema["minItems"]));
        }
        if count("maxItems").is_some_and(|max| items.len() > max) {
            out.push(format!("{at}: more than maxItems {} items", schema["maxItems"]));
        }
    }
}

fn object(schema: &Value, fields: &serde_json::Map<String, Value>, path: &str, place: Place, out: &mut Vec<String>) {
    let at = if path.is_empty() { "<root>" } else { path };
    let props = schema.get("properties").and_then(Value::as_object);
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    for name in schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
        if !fields.contains_key(name) {
            out.push(format!("{at}: {name} is required"));
        }
    }
    for (name, field) in fields {
        let field_path = format!("{path}.{name}");
        // The API server checks apiVersion, kind and metadata itself, not through the schema.
        if place == Place::Root && ["apiVersion", "kind", "metadata"].contains(&name.as_str()) {
            continue;
        }
        let inner = if place == Place::Junctor { Place::Junctor } else { Place::Field };
        match (props.and_then(|p| p.get(name)), schema.get("additionalProperties")) {
            (Some(sub), _) => walk(sub, field, &field_path, inner, out),
            (None, Some(sub)) if sub.is_object() => walk(sub, field, &field_path, inner, out),
            _ if preserve || place == Place::Junctor => {}
            _ => out.push(format!("{field_path}: unknown field")),
        }
    }
}

fn array(schema: &Value, items: &[Value], path: &str, place: Place, out: &mut Vec<String>) {
    let inner = if place == Place::Junctor { Place::Junctor } else { Place::Field };
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            walk(item_schema, item, &format!("{path}[{i}]"), inner, out);
        }
    }
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map") {
        let keys: Vec<&str> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let mut seen = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let key: Vec<&Value> = keys.iter().map(|k| item.get(*k).unwrap_or(&Value::Null)).collect();
            if seen.contains(&key) {
                out.push(format!("{path}[{i}]: duplicate entry with {keys:?} = {key:?}"));
            }
            seen.push(key);
        }
    }
}

fn junctors(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let at = if path.is_empty() { "<root>" } else { path };
    let conforms = |branch: &Value| {
        let mut found = Vec::new();
        walk(branch, value, path, Place::Junctor, &mut found);
        found.is_empty()
    };
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let matching = branches.iter().filter(|b| conforms(b)).count();
        if matching != 1 {
            out.push(format!(
                "{at}: must match exactly one of {} (oneOf), matches {matching}",
                Value::Array(branches.clone())
            ));
        }
    }
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array)
        && !branches.iter().any(conforms)
    {
        out.push(format!("{at}: must match one of {} (anyOf)", Value::Array(branches.clone())));
    }
    for branch in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        walk(branch, value, path, Place::Junctor, out);
    }
    if let Some(not) = schema.get("not")
        && conforms(not)
    {
        out.push(format!("{at}: must not match {not} (not)"));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::problems;

    #[test]
    fn each_keyword_refuses_what_it_should() {
        let schema = json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "pattern": "^[a-z]+$"},
                "count": {"type": "integer", "minimum": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "auth": {"type": "object", "oneOf": [{"required": ["x"]}, {"required": ["y"]}],
                         "properties": {"x": {"type": "string"}, "y": {"type": "string"}}},
                "tests": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                          "items": {"type": "object", "properties": {"name": {"type": "string"}}}},
                "free": {"x-kubernetes-preserve-unknown-fields": true},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        });
        let ok = json!({"name": "abc", "count": 2, "mode": "a", "auth": {"x": "1"},
                        "tests": [{"name": "t1"}, {"name": "t2"}], "free": {"any": [1]}, "labels": {"k": "v"}});
        assert_eq!(problems(&schema, &ok), Vec::<String>::new());
        let bad = json!({"count": 0, "mode": "c", "auth": {"x": "1", "y": "2"}, "tests": [{"name": "t"}, {"name": "t"}],
                         "labels": {"k": 1}, "extra": true});
        let found = problems(&schema, &bad);
        for want in [
            "name is required",
            "below the minimum",
            "is not one of",
            "oneOf",
            "duplicate entry",
            ".labels.k: must be of type string",
            ".extra: unknown field",
        ] {
            assert!(found.iter().any(|p| p.contains(want)), "{want} not in {found:#?}");
        }
        assert!(problems(&schema, &json!({"name": "ABC"}))[0].contains("does not match the pattern"));
    }
}
