//! A `postgres` target's table: which columns a record writes and the SQL that writes
//! them. Values go to the database as one JSON text parameter and are converted to each
//! column's type by the database itself (`jsonb_populate_record`), so every type the
//! table has is handled as PostgreSQL would cast it, and identifiers are always quoted.

use serde_json::{Map, Value};

use entrepot_api::rules::postgres::{check_table, quote_ident};

use entrepot_api::resource::{Operation, TableSpec};

/// A target table, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// As written in the manifest, for messages.
    pub name: String,
    quoted: String,
    key: Vec<String>,
    columns: Vec<String>,
    record_column: Option<String>,
    upsert: bool,
}

impl Table {
    /// Checks `spec`; `(field under table, message)` when it cannot be used.
    pub fn new(spec: &TableSpec, operation: Operation) -> Result<Self, (&'static str, String)> {
        let quoted = check_table(spec)?;
        let declared: Vec<String> =
            spec.columns.iter().filter(|c| Some(*c) != spec.record_column.as_ref()).cloned().collect();
        // `check_table` wants `columns` unless there is a `recordColumn`: then the key.
        let columns = if declared.is_empty() { spec.key.clone() } else { declared };
        Ok(Self {
            name: spec.name.clone(),
            quoted,
            key: spec.key.clone(),
            columns,
            record_column: spec.record_column.clone(),
            upsert: operation == Operation::Upsert,
        })
    }

    /// The columns every record writes (apart from `recordColumn`): the manifest's,
    /// whatever fields a record has, so one statement serves every record.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Why `record` cannot be written, if it cannot: a key field missing or null.
    pub fn check_key(&self, record: &Map<String, Value>) -> Result<(), String> {
        match self.key.iter().find(|k| record.get(*k).is_none_or(Value::is_null)) {
            Some(missing) => Err(format!(
                "the record has no `{missing}`, a key column of table {}: every record needs its key fields",
                self.name
            )),
            None => Ok(()),
        }
    }

    /// The statement writing one record (parameter `$1`: the record as JSON text).
    pub fn insert_sql(&self) -> String {
        let list =
            |prefix: &str| self.columns.iter().map(|c| format!("{prefix}{}", quote_ident(c))).collect::<Vec<_>>();
        let (mut names, mut values) = (list(""), list("r."));
        if let Some(rc) = &self.record_column {
            names.push(quote_ident(rc));
            values.push("$1::text::jsonb".into());
        }
        let mut sql = format!(
            "INSERT INTO {t} ({names}) SELECT {values} FROM jsonb_populate_record(NULL::{t}, $1::text::jsonb) AS r",
            t = self.quoted,
            names = names.join(", "),
            values = values.join(", "),
        );
        if self.upsert {
            let key: Vec<String> = self.key.iter().map(|k| quote_ident(k)).collect();
            let updates: Vec<String> =
                names.iter().filter(|n| !key.contains(n)).map(|n| format!("{n} = EXCLUDED.{n}")).collect();
            let action =
                if updates.is_empty() { "NOTHING".to_string() } else { format!("UPDATE SET {}", updates.join(", ")) };
            sql = format!("{sql} ON CONFLICT ({}) DO {action}", key.join(", "));
        }
        sql
    }

    /// A query that converts only field `$2` of record `$1` to its column's type: it
    /// fails for the field that holds a value its column cannot take, so a data
    /// exception can name the column even where the database does not.
    pub fn probe_sql(&self) -> String {
        format!(
            "SELECT 1 FROM jsonb_populate_record(NULL::{t}, jsonb_build_object($2::text, ($1::text::jsonb) -> $2::text))",
            t = self.quoted
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(yaml: &str) -> TableSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn an_upsert_writes_the_declared_columns_and_updates_all_but_the_key() {
        let table = Table::new(
            &spec("{name: warehouse.orders, key: [order_id], columns: [currency, order_id, total_minor]}"),
            Operation::Upsert,
        )
        .unwrap();
        let record = json!({"total_minor": 1250, "order_id": "A-1", "currency": "EUR", "is_admin": true});
        table.check_key(record.as_object().unwrap()).unwrap();
        assert_eq!(table.columns(), ["currency", "order_id", "total_minor"], "a field not declared is not a column");
        assert_eq!(
            table.insert_sql(),
            "INSERT INTO \"warehouse\".\"orders\" (\"currency\", \"order_id\", \"total_minor\") \
             SELECT r.\"currency\", r.\"order_id\", r.\"total_minor\" \
             FROM jsonb_populate_record(NULL::\"warehouse\".\"orders\", $1::text::jsonb) AS r \
             ON CONFLICT (\"order_id\") DO UPDATE SET \"currency\" = EXCLUDED.\"currency\", \"total_minor\" = EXCLUDED.\"total_minor\""
        );
    }

    #[test]
    fn a_record_column_takes_the_whole_record_and_create_has_no_conflict_clause() {
        let table = Table::new(&spec("{name: docs, key: [id], recordColumn: doc}"), Operation::Create).unwrap();
        assert_eq!(table.columns(), ["id"]);
        let sql = table.insert_sql();
        assert!(
            sql.starts_with("INSERT INTO \"docs\" (\"id\", \"doc\") SELECT r.\"id\", $1::text::jsonb FROM"),
            "{sql}"
        );
        assert!(!sql.contains("ON CONFLICT"), "{sql}");
        let only_key = Table::new(&spec("{name: t, key: [id], columns: [id]}"), Operation::Upsert).unwrap();
        assert!(only_key.insert_sql().ends_with("ON CONFLICT (\"id\") DO NOTHING"));
    }

    #[test]
    fn records_without_their_key_and_bad_tables_are_refused_by_name() {
        let table =
            Table::new(&spec("{name: t, key: [sku, location], columns: [sku, location, qty]}"), Operation::Upsert)
                .unwrap();
        let err = table.check_key(json!({"sku": "S", "location": null}).as_object().unwrap()).unwrap_err();
        assert!(err.contains("`location`") && err.contains("table t"), "{err}");
        table.check_key(json!({"sku": "S", "location": "L"}).as_object().unwrap()).unwrap();
        let field = |yaml: &str| Table::new(&spec(yaml), Operation::Upsert).unwrap_err().0;
        assert_eq!(field("{name: a.b.c, key: [id]}"), "name");
        assert_eq!(field("{name: t, key: []}"), "key");
        assert_eq!(field("{name: t, key: [id], columns: [qty]}"), "columns");
        assert_eq!(field("{name: t, key: [id]}"), "columns", "which columns are written is declared");
        assert_eq!(field("{name: t, key: [id], recordColumn: id}"), "recordColumn");
    }
}
