//! A container's environment as the kubelet builds it: envFrom, then env (values
//! `$(VAR)`-expanded against what is defined so far), fieldRef and resourceFieldRef; and
//! the same expansion for command and args.

use std::{collections::BTreeMap, net::Ipv4Addr};

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use super::sources::{Kind, Sources};

/// What a node reports as allocatable: the downward API's value of a limit that is not set.
pub const NODE_CPU: &str = "2";
/// See [`NODE_CPU`].
pub const NODE_MEMORY: &str = "8Gi";

/// The environment of `container`, in definition order, or the message of a
/// `CreateContainerConfigError`.
pub async fn environment(
    pod: &Pod,
    container: &Container,
    ip: Ipv4Addr,
    sources: &mut Sources,
) -> Result<BTreeMap<String, String>, String> {
    let mut env = BTreeMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (kind, name, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(cm), _) => (Kind::ConfigMap, cm.name.clone(), cm.optional.unwrap_or(false)),
            (None, Some(s)) => (Kind::Secret, s.name.clone(), s.optional.unwrap_or(false)),
            (None, None) => continue,
        };
        for (key, value) in sources.require(kind, &name, optional).await? {
            // The kubelet skips keys that are not valid variable names (with an Event).
            if valid_name(&format!("{prefix}{key}")) {
                env.insert(format!("{prefix}{key}"), String::from_utf8_lossy(&value).into_owned());
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match &var.value_from {
            None => expand(var.value.as_deref().unwrap_or(""), &env),
            Some(from) => {
                if let Some(r) = &from.config_map_key_ref {
                    match key_value(sources, Kind::ConfigMap, &r.name, &r.key, r.optional.unwrap_or(false)).await? {
                        Some(v) => v,
                        None => continue,
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    match key_value(sources, Kind::Secret, &r.name, &r.key, r.optional.unwrap_or(false)).await? {
                        Some(v) => v,
                        None => continue,
                    }
                } else if let Some(f) = &from.field_ref {
                    field_value(pod, &f.field_path, ip).map_err(|e| format!("env {}: {e}", var.name))?
                } else if let Some(r) = &from.resource_field_ref {
                    resource_value(pod, Some(container), r).map_err(|e| format!("env {}: {e}", var.name))?
                } else {
                    String::new()
                }
            }
        };
        env.insert(var.name.clone(), value);
    }
    Ok(env)
}

/// One key of a ConfigMap or Secret; `None` when it may be left out.
async fn key_value(
    sources: &mut Sources,
    kind: Kind,
    name: &str,
    key: &str,
    optional: bool,
) -> Result<Option<String>, String> {
    let Some(data) = sources.get(kind, name).await? else {
        return if optional { Ok(None) } else { Err(format!("{} {name:?} not found", kind.noun())) };
    };
    match data.get(key) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None if optional => Ok(None),
        None => Err(format!("couldn't find key {key} in {} {}", kind.noun(), name)),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Kubernetes' `$(VAR)` expansion: a defined variable is replaced, an undefined one is
/// left as written, `$$` is a literal `$`.
pub fn expand(input: &str, vars: &BTreeMap<String, String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let (mut checkpoint, mut cursor) = (0, 0);
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            match bytes[cursor + 1] {
                b'$' => {
                    out.push('$');
                    cursor += 2;
                }
                b'(' => match input[cursor + 2..].find(')') {
                    Some(end) => {
                        let name = &input[cursor + 2..cursor + 2 + end];
                        match vars.get(name) {
                            Some(v) => out.push_str(v),
                            None => out.push_str(&format!("$({name})")),
                        }
                        cursor += end + 3;
                    }
                    None => {
                        out.push_str("$(");
                        cursor += 2;
                    }
                },
                _ => {
                    out.push('$');
                    cursor += 1;
                }
            }
            checkpoint = cursor;
        } else {
            cursor += 1;
        }
    }
    out.push_str(&input[checkpoint..]);
    out
}

/// A downward API field of `pod` (env fieldRef and downwardAPI volume files).
pub fn field_value(pod: &Pod, path: &str, ip: Ipv4Addr) -> Result<String, String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let lines = |map: &Option<BTreeMap<String, String>>| {
        let mut out = String::new();
        for (k, v) in map.iter().flatten() {
            out.push_str(&format!("{k}={}\n", serde_json::to_string(v).unwrap_or_default()));
        }
        out
    };
    let subscript = |prefix: &str| -> Option<String> {
        let rest = path.strip_prefix(prefix)?.strip_prefix('[')?.strip_suffix(']')?;
        Some(rest.trim_matches(|c| c == '\'' || c == '"').to_string())
    };
    if let Some(key) = subscript("metadata.labels") {
        return Ok(meta.labels.as_ref().and_then(|l| l.get(&key)).cloned().unwrap_or_default());
    }
    if let Some(key) = subscript("metadata.annotations") {
        return Ok(meta.annotations.as_ref().and_then(|a| a.get(&key)).cloned().unwrap_or_default());
    }
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => lines(&meta.labels),
        "metadata.annotations" => lines(&meta.annotations),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()).unwrap_or_default(),
        "status.podIP" | "status.podIPs" => ip.to_string(),
        "status.hostIP" | "status.hostIPs" => "127.0.0.1".into(),
        other => return Err(format!("field path {other:?} is not supported by the process kubelet")),
    })
}

/// A container's limit or request through the downward API, in units of the divisor
/// (rounded up, as Kubernetes does); an unset limit is the node's allocatable.
pub fn resource_value(
    pod: &Pod,
    container: Option<&Container>,
    selector: &ResourceFieldSelector,
) -> Result<String, String> {
    let container = match &selector.container_name {
        Some(name) if !name.is_empty() => pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter().chain(s.init_containers.iter().flatten()))
            .find(|c| &c.name == name)
            .ok_or_else(|| format!("resourceFieldRef names container {name:?}, which the pod does not have"))?,
        _ => container.ok_or("resourceFieldRef needs containerName in a volume")?,
    };
    let (class, resource) = selector
        .resource
        .split_once('.')
        .ok_or_else(|| format!("resource {:?} is not limits.X or requests.X", selector.resource))?;
    let resources = container.resources.as_ref();
    let set = match class {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(format!("resource {:?} is not limits.X or requests.X", selector.resource)),
    }
    .and_then(|m| m.get(resource))
    .map(|q| q.0.clone());
    let value = match (set, class, resource) {
        (Some(v), _, _) => v,
        (None, "limits", "cpu") => NODE_CPU.into(),
        (None, "limits", "memory") => NODE_MEMORY.into(),
        (None, _, _) => "0".into(),
    };
    let value = quantity(&value)?;
    let divisor = match &selector.divisor {
        Some(d) => quantity(&d.0)?,
        None => 1.0,
    };
    if divisor <= 0.0 {
        return Err(format!("divisor of {} is not positive", selector.resource));
    }
    // Rounded up, like the kubelet; a cpu with divisor 1 of 250m reads 1.
    Ok(format!("{}", (value / divisor - 1e-9).ceil().max(0.0) as u64))
}

/// A resource quantity ("250m", "64Mi", "2", "1e3") as a number.
pub fn quantity(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (number, suffix) = match suffix.strip_prefix(['e', 'E']) {
        Some(exp) if !exp.is_empty() && exp.trim_start_matches(['-', '+']).chars().all(|c| c.is_ascii_digit()) => {
            (format!("{number}e{exp}"), "")
        }
        _ => (number.to_string(), suffix),
    };
    let number: f64 = number.parse().map_err(|_| format!("quantity {text:?} is not a number"))?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0_f64.powi(2),
        "Gi" => 1024.0_f64.powi(3),
        "Ti" => 1024.0_f64.powi(4),
        "Pi" => 1024.0_f64.powi(5),
        "Ei" => 1024.0_f64.powi(6),
        other => return Err(format!("quantity {text:?} has an unknown suffix {other:?}")),
    };
    Ok(number * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn expansion_follows_kubernetes() {
        let v = vars(&[("A", "a"), ("B", "b")]);
        assert_eq!(expand("$(A)-$(B)", &v), "a-b");
        assert_eq!(expand("$(C)", &v), "$(C)");
        assert_eq!(expand("$$(A)", &v), "$(A)");
        assert_eq!(expand("$$$(A)", &v), "$a");
        assert_eq!(expand("$(A", &v), "$(A");
        assert_eq!(expand("cost $5 $", &v), "cost $5 $");
        assert_eq!(expand("é$(A)é", &v), "éaé");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("250m").unwrap(), 0.25);
        assert_eq!(quantity("64Mi").unwrap(), 64.0 * 1024.0 * 1024.0);
        assert_eq!(quantity("1e3").unwrap(), 1000.0);
        assert!(quantity("12Q").is_err());
    }
}
