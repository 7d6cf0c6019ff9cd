//! A preview as people read it: per record and per field in the terminal, and a
//! markdown summary a pull-request pipeline posts as a comment.

use std::{collections::BTreeMap, fmt::Write as _};

use serde_json::Value;

use super::compare::{RecordPreview, Verdict, field_of};

/// The most field changes listed per record in the terminal.
const FIELDS_PER_RECORD: usize = 20;
/// The widest a value is written.
const VALUE_WIDTH: usize = 60;
/// The most rows of a list in the summary (fields, records, violations).
const SUMMARY_ROWS: usize = 25;

/// One Mapping's preview.
#[derive(Clone, Debug)]
pub struct MappingReport {
    /// `namespace/name`.
    pub key: String,
    /// `changed`, `added` or `removed`.
    pub change: &'static str,
    /// Each record.
    pub records: Vec<RecordPreview>,
}

impl MappingReport {
    /// The records the change breaks.
    pub fn broken(&self) -> impl Iterator<Item = &RecordPreview> {
        self.records.iter().filter(|r| r.verdict == Verdict::Broken)
    }

    fn count(&self, verdict: Verdict) -> usize {
        self.records.iter().filter(|r| r.verdict == verdict).count()
    }

    /// Each changed field (array indexes as `*`): in how many records, and one example.
    fn fields(&self) -> BTreeMap<String, (usize, String)> {
        let mut fields: BTreeMap<String, (usize, String)> = BTreeMap::new();
        for record in self.records.iter().filter(|r| matches!(r.verdict, Verdict::Changed | Verdict::Fixed)) {
            for change in &record.changes {
                let entry = fields.entry(field_of(&change.pointer)).or_insert_with(|| (0, change_text(change)));
                entry.0 += 1;
            }
        }
        fields
    }

    /// Each schema violation the change introduces (indexes as `*`), with the records.
    fn introduced(&self) -> BTreeMap<String, Vec<&str>> {
        let mut out: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for record in &self.records {
            for v in &record.introduced {
                let (pointer, what) = v.split_once(": ").unwrap_or((v.as_str(), ""));
                out.entry(format!("{}: {what}", field_of(pointer))).or_default().push(&record.sample);
            }
        }
        out
    }
}

fn change_text(change: &super::compare::FieldChange) -> String {
    match (&change.old, &change.new) {
        (Some(a), Some(b)) => format!("{} → {}", value(a), value(b)),
        (None, Some(b)) => format!("added {}", value(b)),
        (Some(a), None) => format!("removed (was {})", value(a)),
        (None, None) => String::new(),
    }
}

fn value(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > VALUE_WIDTH {
        format!("{}…", text.chars().take(VALUE_WIDTH - 1).collect::<String>())
    } else {
        text
    }
}

/// The terminal's report: each Mapping, each record that is not unchanged with its
/// fields, the violations introduced.
pub fn text(reports: &[MappingReport]) -> String {
    let mut out = String::new();
    for r in reports {
        writeln!(out, "Mapping {} ({}): {}", r.key, r.change, counts(r)).expect("writing to a String");
        for record in r.records.iter().filter(|x| x.verdict != Verdict::Unchanged) {
            let why = match record.verdict {
                Verdict::Broken | Verdict::StillFailing => record.new.failure().map(|f| format!(": {f}")),
                Verdict::Fixed => record.old.failure().map(|f| format!(" (failed before: {f})")),
                _ => None,
            };
            writeln!(out, "  {:<13} {}{}", record.verdict.as_str(), record.sample, why.unwrap_or_default())
                .expect("writing to a String");
            for change in record.changes.iter().take(FIELDS_PER_RECORD) {
                let mark = match (&change.old, &change.new) {
                    (Some(_), Some(_)) => '~',
                    (None, _) => '+',
                    (_, None) => '-',
                };
                writeln!(out, "                {mark} {}: {}", change.pointer, change_text(change))
                    .expect("writing to a String");
            }
            if record.changes.len() > FIELDS_PER_RECORD {
                writeln!(out, "                … {} more field(s)", record.changes.len() - FIELDS_PER_RECORD)
                    .expect("writing to a String");
            }
        }
        let introduced = r.introduced();
        if !introduced.is_empty() {
            writeln!(out, "  schema violations the change introduces:").expect("writing to a String");
            for (violation, records) in introduced {
                writeln!(out, "    {violation} ({})", records.join(", ")).expect("writing to a String");
            }
        }
    }
    writeln!(out, "{}", verdict_line(reports)).expect("writing to a String");
    out
}

fn counts(r: &MappingReport) -> String {
    let parts: Vec<String> =
        [Verdict::Unchanged, Verdict::Changed, Verdict::Broken, Verdict::Fixed, Verdict::StillFailing]
            .into_iter()
            .map(|v| (v, r.count(v)))
            .filter(|(_, n)| *n > 0)
            .map(|(v, n)| format!("{n} {}", v.as_str()))
            .collect();
    format!("{} record(s): {}", r.records.len(), parts.join(", "))
}

fn verdict_line(reports: &[MappingReport]) -> String {
    let broken: Vec<&str> = reports.iter().flat_map(|r| r.broken().map(|x| x.sample.as_str())).collect();
    if broken.is_empty() {
        "Result: no record that passed before fails with the change.".into()
    } else {
        format!("Result: the change breaks {} record(s) that passed: {}", broken.len(), broken.join(", "))
    }
}

/// The markdown summary for a pull request.
pub fn markdown(reports: &[MappingReport]) -> String {
    let mut out = String::from("## Mapping preview (`entrepot preview`)\n\n");
    let broken: usize = reports.iter().map(|r| r.broken().count()).sum();
    if broken == 0 {
        out.push_str("✅ No record that passed before fails with this change.\n");
    } else {
        writeln!(out, "❌ **This change breaks {broken} record(s) that passed before.**").expect("writing to a String");
    }
    for r in reports {
        writeln!(out, "\n### Mapping `{}` ({})\n", r.key, r.change).expect("writing to a String");
        out.push_str("| records | unchanged | changed | broken | fixed | still failing |\n");
        out.push_str("|--:|--:|--:|--:|--:|--:|\n");
        let n = [Verdict::Unchanged, Verdict::Changed, Verdict::Broken, Verdict::Fixed, Verdict::StillFailing]
            .map(|v| r.count(v).to_string());
        writeln!(out, "| {} | {} |", r.records.len(), n.join(" | ")).expect("writing to a String");
        let broken: Vec<&RecordPreview> = r.broken().collect();
        if !broken.is_empty() {
            out.push_str("\n**Broken records**\n\n");
            for record in broken.iter().take(SUMMARY_ROWS) {
                let why = record.new.failure().unwrap_or_default();
                writeln!(out, "- `{}`: {}", cell(&record.sample), cell(&why)).expect("writing to a String");
            }
            more(&mut out, broken.len());
        }
        let introduced = r.introduced();
        if !introduced.is_empty() {
            out.push_str("\n**Schema violations introduced**\n\n");
            for (violation, records) in introduced.iter().take(SUMMARY_ROWS) {
                writeln!(out, "- `{}` ({} record(s))", cell(violation), records.len()).expect("writing to a String");
            }
            more(&mut out, introduced.len());
        }
        let fields = r.fields();
        if !fields.is_empty() {
            out.push_str(
                "\n<details><summary>Fields changed</summary>\n\n| field | records | example |\n|---|--:|---|\n",
            );
            for (field, (count, example)) in fields.iter().take(SUMMARY_ROWS) {
                writeln!(out, "| `{}` | {count} | `{}` |", cell(field), cell(example)).expect("writing to a String");
            }
            more(&mut out, fields.len());
            out.push_str("\n</details>\n");
        }
    }
    out
}

fn more(out: &mut String, total: usize) {
    if total > SUMMARY_ROWS {
        writeln!(out, "\n… and {} more", total - SUMMARY_ROWS).expect("writing to a String");
    }
}

/// Text safe in a markdown table cell or code span.
fn cell(text: &str) -> String {
    text.replace('`', "'").replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::preview::compare::{Outcome, diff};
    use serde_json::json;

    fn record(sample: &str, old: Value, new: Option<Value>) -> RecordPreview {
        let changes = diff(Some(&old), new.as_ref());
        let (verdict, new) = match new {
            Some(v) => (Verdict::Changed, Outcome::Mapped { output: v, violations: Vec::new() }),
            None => (Verdict::Broken, Outcome::Failed("mapping failed: .id | not a number".into())),
        };
        let old = Outcome::Mapped { output: old, violations: Vec::new() };
        RecordPreview { sample: sample.into(), old, new, changes, introduced: Vec::new(), verdict }
    }

    #[test]
    fn the_summary_names_broken_records_and_changed_fields() {
        let report = MappingReport {
            key: "retail/orders".into(),
            change: "changed",
            records: vec![
                record("a.json", json!({"l": [{"q": 1}]}), Some(json!({"l": [{"q": 2}]}))),
                record("b.json", json!({"l": []}), None),
            ],
        };
        let md = markdown(std::slice::from_ref(&report));
        assert!(md.contains("breaks 1 record(s)"), "{md}");
        assert!(md.contains("- `b.json`: mapping failed: .id \\| not a number"), "{md}");
        assert!(md.contains("| `/l/*/q` | 1 | `1 → 2` |"), "{md}");
        let text = text(&[report]);
        assert!(text.contains("~ /l/0/q: 1 → 2"), "{text}");
        assert!(text.contains("breaks 1 record(s) that passed: b.json"), "{text}");
    }
}
