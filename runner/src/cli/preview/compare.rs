//! The comparison itself, pure: one Mapping's old and new version run over the same
//! (masked) payloads with the engine and the canonical schemas the runner uses
//! (`entrepot_api::mapping`, `entrepot_api::canonical`), and what changed per record and
//! per field.

use std::collections::{BTreeMap, BTreeSet};

use entrepot_api::{
    canonical::Validator,
    mapping::{Program, from_value, to_value},
    resource::MappingSpec,
};
use serde_json::Value;

use super::samples::Sample;

/// One version of a Mapping, compiled once.
pub struct Version {
    program: Result<Program, String>,
    validator: Result<Option<Validator>, String>,
}

impl Version {
    /// `spec` compiled, and the schema of what it `produces`; either failing fails every
    /// record with the reason.
    pub fn new(spec: &MappingSpec) -> Self {
        let program = Program::compile(&spec.program, &spec.lookups).map_err(|e| format!("does not compile: {e}"));
        let validator = spec
            .produces
            .as_ref()
            .map(|p| Validator::new(&p.entity, &p.version).map_err(|e| format!("spec.produces: {e}")))
            .transpose();
        Self { program, validator }
    }

    /// What this version makes of `payload`.
    pub fn apply(&self, payload: &Value) -> Outcome {
        let program = match &self.program {
            Ok(p) => p,
            Err(e) => return Outcome::Failed(e.clone()),
        };
        let validator = match &self.validator {
            Ok(v) => v,
            Err(e) => return Outcome::Failed(e.clone()),
        };
        let output = match program.run(from_value(payload)).and_then(|v| to_value(&v)) {
            Ok(output) => output,
            Err(e) => return Outcome::Failed(format!("mapping failed: {e}")),
        };
        let violations = match validator.as_ref().map(|v| v.check(&output)) {
            Some(Err(v)) => v.failures,
            _ => Vec::new(),
        };
        Outcome::Mapped { output, violations }
    }
}

/// What a version made of one payload.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Mapped; the schema violations of the result (none: it passes).
    Mapped {
        /// The canonical (or target) record.
        output: Value,
        /// `<JSON pointer>: <what is wrong>`, for each failing field.
        violations: Vec<String>,
    },
    /// The program failed on it (or does not compile).
    Failed(String),
}

impl Outcome {
    /// Whether the record would go on to its targets (mapped, and valid).
    pub fn passes(&self) -> bool {
        matches!(self, Self::Mapped { violations, .. } if violations.is_empty())
    }

    fn output(&self) -> Option<&Value> {
        match self {
            Self::Mapped { output, .. } => Some(output),
            Self::Failed(_) => None,
        }
    }

    fn violations(&self) -> &[String] {
        match self {
            Self::Mapped { violations, .. } => violations,
            Self::Failed(_) => &[],
        }
    }

    /// Why the record would be dead-lettered, in one line.
    pub fn failure(&self) -> Option<String> {
        match self {
            Self::Failed(e) => Some(e.clone()),
            Self::Mapped { violations, .. } if !violations.is_empty() => {
                Some(format!("schema violations: {}", violations.join("; ")))
            }
            Self::Mapped { .. } => None,
        }
    }
}

/// What the change does to one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// Passed before, fails now: the change breaks it.
    Broken,
    /// Passes with different fields.
    Changed,
    /// Failed before, passes now.
    Fixed,
    /// Failed before and still does.
    StillFailing,
    /// The same result.
    Unchanged,
}

impl Verdict {
    /// How the verdict is written.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Broken => "broken",
            Self::Changed => "changed",
            Self::Fixed => "fixed",
            Self::StillFailing => "still failing",
            Self::Unchanged => "unchanged",
        }
    }
}

/// One field that differs: absent on one side when added or removed.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    /// Its JSON pointer in the output.
    pub pointer: String,
    /// The old version's value.
    pub old: Option<Value>,
    /// The new version's value.
    pub new: Option<Value>,
}

/// One record through both versions.
#[derive(Clone, Debug)]
pub struct RecordPreview {
    /// Where the record came from (a file, a line, a dead letter).
    pub sample: String,
    /// The old version's result.
    pub old: Outcome,
    /// The new version's result.
    pub new: Outcome,
    /// The fields that differ.
    pub changes: Vec<FieldChange>,
    /// Schema violations of the new result that the old one did not have.
    pub introduced: Vec<String>,
    /// What the change does to it.
    pub verdict: Verdict,
}

/// Runs `samples` through `old` (none: a new Mapping) and `new`.
pub fn preview(old: Option<&Version>, new: &Version, samples: &[Sample]) -> Vec<RecordPreview> {
    samples
        .iter()
        .map(|s| {
            let old_outcome =
                old.map_or_else(|| Outcome::Failed("no such Mapping before".into()), |v| v.apply(&s.payload));
            let new_outcome = new.apply(&s.payload);
            record(&s.name, old_outcome, new_outcome)
        })
        .collect()
}

fn record(sample: &str, old: Outcome, new: Outcome) -> RecordPreview {
    let changes = diff(old.output(), new.output());
    let before: BTreeSet<&String> = old.violations().iter().collect();
    let introduced = new.violations().iter().filter(|v| !before.contains(v)).cloned().collect();
    let verdict = match (old.passes(), new.passes()) {
        (true, false) => Verdict::Broken,
        (false, true) => Verdict::Fixed,
        (false, false) => Verdict::StillFailing,
        (true, true) if changes.is_empty() => Verdict::Unchanged,
        (true, true) => Verdict::Changed,
    };
    RecordPreview { sample: sample.to_string(), old, new, changes, introduced, verdict }
}

/// The fields that differ between two outputs, by JSON pointer, in order.
pub fn diff(old: Option<&Value>, new: Option<&Value>) -> Vec<FieldChange> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    if let Some(v) = old {
        leaves(v, String::new(), &mut a);
    }
    if let Some(v) = new {
        leaves(v, String::new(), &mut b);
    }
    let pointers: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    pointers
        .into_iter()
        .filter(|p| a.get(*p) != b.get(*p))
        .map(|p| FieldChange { pointer: p.clone(), old: a.get(p).cloned(), new: b.get(p).cloned() })
        .collect()
}

fn leaves(value: &Value, at: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (k, v) in fields {
                leaves(v, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(v, format!("{at}/{i}"), out);
            }
        }
        leaf => {
            out.insert(if at.is_empty() { "/".into() } else { at }, leaf.clone());
        }
    }
}

/// A pointer with its array indexes as `*` (`/lines/3/sku` → `/lines/*/sku`): how field
/// changes and violations are counted across records.
pub fn field_of(pointer: &str) -> String {
    pointer.split('/').map(|part| if part.parse::<u64>().is_ok() { "*" } else { part }).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(program: &str, produces: Option<(&str, &str)>) -> MappingSpec {
        let mut s: MappingSpec = serde_json::from_value(json!({ "program": program })).unwrap();
        s.produces = produces.map(|(e, v)| serde_json::from_value(json!({"entity": e, "version": v})).unwrap());
        s
    }

    fn sample(name: &str, payload: Value) -> Sample {
        Sample { name: name.into(), payload }
    }

    #[test]
    fn fields_are_diffed_by_pointer_and_counted_by_field() {
        let changes = diff(
            Some(&json!({"a": 1, "l": [{"s": "x"}], "gone": true})),
            Some(&json!({"a": 2, "l": [{"s": "x"}, {"s": "y"}]})),
        );
        let pointers: Vec<&str> = changes.iter().map(|c| c.pointer.as_str()).collect();
        assert_eq!(pointers, ["/a", "/gone", "/l/1/s"]);
        assert_eq!((changes[1].old.clone(), changes[1].new.clone()), (Some(json!(true)), None));
        assert_eq!(field_of("/l/12/s"), "/l/*/s");
    }

    #[test]
    fn a_record_that_passed_and_now_fails_is_broken_and_one_that_changed_is_not() {
        let old = Version::new(&spec("{id: .id, total: .total}", None));
        let renamed = Version::new(&spec("{id: .id, amount: .total}", None));
        let failing = Version::new(&spec("{id: (.id | tonumber)}", None));
        let samples =
            [sample("a.json", json!({"id": "A1", "total": 5})), sample("b.json", json!({"id": "7", "total": 1}))];
        let changed = preview(Some(&old), &renamed, &samples);
        assert!(changed.iter().all(|r| r.verdict == Verdict::Changed));
        assert_eq!(changed[0].changes.len(), 2, "total removed, amount added");
        let broken = preview(Some(&old), &failing, &samples);
        assert_eq!((broken[0].verdict, broken[1].verdict), (Verdict::Broken, Verdict::Changed));
        assert!(broken[0].new.failure().unwrap().contains("mapping failed"), "{:?}", broken[0].new);
        let same = preview(Some(&old), &old, &samples);
        assert!(same.iter().all(|r| r.verdict == Verdict::Unchanged && r.changes.is_empty()));
    }

    #[test]
    fn schema_violations_the_change_introduces_are_named() {
        let produces = Some(("InventorySnapshot", "v1"));
        let bad = Version::new(&spec("{sku: .sku}", produces));
        let samples = [sample("s.json", json!({"sku": "A"}))];
        let new_mapping = preview(None, &bad, &samples);
        assert_eq!(new_mapping[0].verdict, Verdict::StillFailing, "nothing passed before a new Mapping");
        assert!(!new_mapping[0].introduced.is_empty());
        let unknown = Version::new(&spec(".", Some(("Nope", "v9"))));
        assert!(unknown.apply(&json!({})).failure().unwrap().contains("spec.produces"));
    }
}
