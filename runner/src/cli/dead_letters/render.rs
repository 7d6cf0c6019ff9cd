//! Dead letters as people read them: a table, one letter in full with what to do about
//! it, and the outcome of a replay or discard.

use std::fmt::Write as _;

use crate::queue::{ActionReport, Attempt, AuditEntry, DeadLetterAction, DeadLetterEntry, DeadLetterPage};

/// The widest a message gets in the table; `show` has the whole of it.
const MESSAGE_WIDTH: usize = 72;

/// One line per dead letter under a header.
pub fn table(entries: &[DeadLetterEntry], now_ms: i64) -> String {
    if entries.is_empty() {
        return "No dead letters.\n".into();
    }
    let header = ["ID", "FLOW", "REASON", "TARGET", "AGE", "CORRELATION ID", "MESSAGE"].map(String::from);
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            let d = &e.dead_letter;
            [
                e.id.to_string(),
                e.flow.clone(),
                d.reason.as_str().into(),
                target(e),
                age(now_ms - d.dead_lettered_at_ms),
                d.envelope.correlation_id.clone(),
                one_line(&d.message, MESSAGE_WIDTH),
            ]
        })
        .collect();
    columns(&header, &rows)
}

/// Rows under a header, each column as wide as its widest cell.
fn columns<const N: usize>(header: &[String; N], rows: &[[String; N]]) -> String {
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header).chain(rows) {
        let cells: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", cells.join("  ").trim_end()).expect("writing to a String");
    }
    out
}

/// The audit trail: one line per entry, oldest first.
pub fn history(entries: &[AuditEntry]) -> String {
    if entries.is_empty() {
        return "No replay, discard, injection or repair recorded.\n".into();
    }
    let header = ["WHEN", "FLOW", "ACTION", "COUNT", "WHO", "WHY", "DEAD LETTERS"].map(String::from);
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            let when = jiff::Timestamp::from_millisecond(e.at_ms)
                .map_or_else(|_| e.at_ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string());
            let mut ids: Vec<String> = e.dead_letters.iter().map(u64::to_string).collect();
            if e.more_ids > 0 {
                ids.push(format!("+{}", e.more_ids));
            }
            let action = match &e.schedule {
                Some(schedule) => format!("{} ({schedule})", e.action.as_str()),
                None => e.action.as_str().into(),
            };
            [
                when,
                e.flow.clone(),
                action,
                e.count.to_string(),
                one_line(&e.caller.requested_by(), MESSAGE_WIDTH),
                one_line(&e.caller.why, MESSAGE_WIDTH),
                one_line(&ids.join(","), 40),
            ]
        })
        .collect();
    columns(&header, &rows)
}

/// A note that the page is not the whole list, with the option for the next page.
pub fn more(page: &DeadLetterPage, program: &str, reach: &str) -> Option<String> {
    let next = page.next_after?;
    Some(format!(
        "{} of {} dead letters shown; next page: {program} list {reach} --after {next}",
        page.entries.len(),
        page.total
    ))
}

/// One dead letter in full, and what to do about it.
pub fn show(e: &DeadLetterEntry, now_ms: i64) -> String {
    let d = &e.dead_letter;
    let env = &d.envelope;
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        writeln!(out, "  {label:<15} {value}").expect("writing to a String");
    };
    line("Reason", d.reason.as_str());
    line("Message", &d.message);
    if d.target.is_some() {
        let answer = d.status.map(|s| format!(", answered HTTP {s}")).unwrap_or_default();
        line("Target", &format!("{}{answer}", target(e)));
    }
    line("Correlation id", &env.correlation_id);
    line("Record id", &env.id);
    if let Some(delivery) = &env.delivery_id {
        line("Delivery id", delivery);
    }
    if let Some(sent) = &env.source_delivery_id {
        line("Sender's id", sent);
    }
    if let Some(topic) = &env.topic {
        line("Topic", topic);
    }
    line("Received", &time(env.received_at_ms, now_ms));
    line("Dead-lettered", &time(d.dead_lettered_at_ms, now_ms));
    if let Some(r) = &env.replay {
        let when = time(r.replayed_at_ms, now_ms);
        let from =
            r.dead_letter_id.map_or("as a reconciliation repair".to_string(), |id| format!("from dead letter {id}"));
        line("Replays", &format!("{}, the last {from} by {} at {when}", r.count, r.requested_by));
    }
    let mut out = format!("Dead letter {} of flow {}\n{out}", e.id, e.flow);
    section(&mut out, "Attempts", &attempts(&d.attempts, now_ms));
    if let Some(body) = &d.response_body {
        section(&mut out, "Target's answer", &pretty(body.as_bytes()));
    }
    if let Some(r) = env.replay.as_ref().filter(|r| !r.history.is_empty()) {
        let mut earlier = String::new();
        for h in &r.history {
            let status = h.status.map(|s| format!(", HTTP {s}")).unwrap_or_default();
            writeln!(
                earlier,
                "dead letter {} at {}: {}{status}: {}",
                h.dead_letter_id,
                time(h.dead_lettered_at_ms, now_ms),
                h.reason.as_str(),
                h.message
            )
            .expect("writing to a String");
            earlier.push_str(&indent(&attempts(&h.attempts, now_ms)));
        }
        section(&mut out, "Earlier failures", &earlier);
    }
    section(&mut out, "Payload", &pretty(&env.payload));
    out
}

/// What to do about dead letter `e`: the remedy for its reason and the commands.
pub fn next_steps(e: &DeadLetterEntry, program: &str, reach: &str) -> String {
    let mut steps = format!("{}.\n", capitalize(e.dead_letter.reason.remedy()));
    writeln!(steps, "{program} replay {} {reach} --why \"<what was fixed>\"", e.id).expect("writing to a String");
    writeln!(steps, "{program} discard {} {reach} --why \"<why it is not needed>\"", e.id)
        .expect("writing to a String");
    let mut out = String::new();
    section(&mut out, "What to do", &steps);
    out
}

/// The outcome of a replay or discard.
pub fn report(action: DeadLetterAction, r: &ActionReport, local: bool, program: &str, reach: &str) -> String {
    if r.count == 0 {
        return format!("No dead letter matched: nothing {}.\n", action.done());
    }
    let ids: Vec<String> = r.ids.iter().map(u64::to_string).collect();
    let mut out = format!("{} {} dead letter(s): {}\n", capitalize(action.done()), r.count, ids.join(", "));
    if action == DeadLetterAction::Replay {
        out.push_str(if local {
            "They are back in their flows' inboxes; the runner delivers them when it next starts on this data directory.\n"
        } else {
            "The runner is delivering them now.\n"
        });
        writeln!(out, "One that fails again comes back as a new dead letter with its history: {program} list {reach}")
            .expect("writing to a String");
    }
    out
}

fn section(out: &mut String, title: &str, body: &str) {
    if body.trim().is_empty() {
        return;
    }
    write!(out, "\n{title}\n{}", indent(body)).expect("writing to a String");
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}

fn attempts(list: &[Attempt], now_ms: i64) -> String {
    list.iter()
        .enumerate()
        .map(|(i, a)| {
            let status = a.status.map_or("-".to_string(), |s| s.to_string());
            format!("{:>2}. {}  {status:>3}  {}\n", i + 1, time(a.at_ms, now_ms), one_line(&a.outcome, 120))
        })
        .collect()
}

/// The target's name, with its Connector when a runner told it and it differs.
fn target(e: &DeadLetterEntry) -> String {
    match (&e.target_connector, &e.dead_letter.target) {
        (Some(connector), Some(name)) if connector != name => format!("{name} (Connector {connector})"),
        (_, Some(name)) => name.clone(),
        _ => "-".into(),
    }
}

/// JSON pretty-printed; anything else as text.
fn pretty(bytes: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(v) => serde_json::to_string_pretty(&v).expect("a JSON value serializes"),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn time(at_ms: i64, now_ms: i64) -> String {
    let stamp = jiff::Timestamp::from_millisecond(at_ms)
        .map_or_else(|_| at_ms.to_string(), |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string());
    format!("{stamp} ({} ago)", age(now_ms - at_ms))
}

/// A duration in its largest whole unit: `45s`, `3m`, `2h`, `5d`.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// The first line of `text`, cut to `width` characters.
fn one_line(text: &str, width: usize) -> String {
    let first = text.lines().next().unwrap_or_default();
    if first.chars().count() > width || text.lines().nth(1).is_some() {
        let cut: String = first.chars().take(width.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        first.to_string()
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{DeadLetter, DeadLetterReason, Envelope};

    fn entry() -> DeadLetterEntry {
        DeadLetterEntry {
            id: 12,
            flow: "orders".into(),
            target_connector: Some("erp".into()),
            dead_letter: DeadLetter {
                envelope: Envelope {
                    id: "rec-1".into(),
                    delivery_id: Some("body-sha256:ab12".into()),
                    source_delivery_id: Some("b54557e4-ef8a-4b5d-a8a3-3e0d0c2d9e11".into()),
                    event_id: None,
                    topic: Some("orders/create".into()),
                    correlation_id: "corr-1".into(),
                    trace_parent: None,
                    received_at_ms: 0,
                    payload: br#"{"id":1,"sku":"NOPE"}"#.to_vec(),
                    replay: None,
                },
                target: Some("erp-archive".into()),
                reason: DeadLetterReason::Rejected,
                message: "400 Bad Request: Invalid item reference key NOPE\nsecond line".into(),
                status: Some(400),
                response_body: Some(r#"{"error":"INVALID_KEY_OR_REF"}"#.into()),
                attempts: vec![Attempt { at_ms: 0, status: Some(400), outcome: "rejected".into(), throttled: false }],
                dead_lettered_at_ms: 0,
            },
        }
    }

    #[test]
    fn the_table_has_one_line_per_letter_with_a_one_line_message() {
        let text = table(&[entry()], 3 * 3_600_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].starts_with("ID  FLOW"), "{text}");
        for cell in [
            "12",
            "orders",
            "rejected",
            "erp-archive (Connector erp)",
            "3h",
            "corr-1",
            "Invalid item reference key NOPE…",
        ] {
            assert!(lines[1].contains(cell), "{cell} missing: {text}");
        }
    }

    #[test]
    fn show_pretty_prints_the_payload_and_the_answer_and_says_what_to_do() {
        let e = entry();
        let text = show(&e, 60_000) + &next_steps(&e, "entrepot deadletters", "--admin http://x");
        assert!(text.contains("\"sku\": \"NOPE\""), "{text}");
        assert!(text.contains("\"error\": \"INVALID_KEY_OR_REF\""), "{text}");
        assert!(text.contains("erp-archive (Connector erp), answered HTTP 400"), "{text}");
        assert!(text.contains(" 1. 1970-01-01 00:00:00 UTC (1m ago)  400  rejected"), "{text}");
        assert!(text.contains("entrepot deadletters replay 12 --admin http://x"), "{text}");
        assert!(text.contains("The target refused the record"), "{text}");
        assert!(text.contains("Sender's id     b54557e4-ef8a-4b5d-a8a3-3e0d0c2d9e11"), "{text}");
    }
}
