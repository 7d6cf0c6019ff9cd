//! PostgreSQL names and addresses as a manifest writes them: a Connector's
//! `postgres://HOST[:PORT]/DATABASE` endpoint and a target's table name. Pure checks,
//! shared by the operator (refusing a bad manifest) and the runner (connecting, writing).

use url::Url;

use crate::resource::TableSpec;

/// The parts of a `postgres://` endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// Port, 5432 by default.
    pub port: u16,
    /// The database.
    pub database: String,
}

/// Reads a postgres Connector's endpoint, or says what is wrong with it. Credentials
/// and parameters in the URL are refused: the password belongs in a Secret, and one
/// place for each setting keeps manifests readable.
pub fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    const LIKE: &str = "write it like postgres://db.retail.svc:5432/commerce";
    let url = Url::parse(text).map_err(|e| format!("is not a URL ({e}); {LIKE}"))?;
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        return Err(format!("uses {}: a postgres Connector's endpoint starts with postgres://; {LIKE}", url.scheme()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // The URL is not repeated in this message: it may hold a password.
        return Err("holds a user or password: put them in a Secret and name its keys in auth.basic".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("has a query or fragment: {LIKE}"));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| format!("has no host; {LIKE}"))?;
    let database = url.path().trim_start_matches('/');
    if database.is_empty() || database.contains('/') {
        return Err(format!("must name one database after the host; {LIKE}"));
    }
    let database = percent_decode(database);
    Ok(Endpoint { host: host.trim_matches(['[', ']']).to_string(), port: url.port().unwrap_or(5432), database })
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("d={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_string())
}

/// `name` as a quoted SQL identifier: any name works, none can break out of the quotes.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A table name, `table` or `schema.table`, as quoted SQL, or what is wrong with it.
pub fn quote_table(name: &str) -> Result<String, String> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 2 || parts.iter().any(|p| p.trim().is_empty()) {
        return Err(format!("`{name}` is not a table name: write `table` or `schema.table`"));
    }
    Ok(parts.iter().map(|p| quote_ident(p)).collect::<Vec<_>>().join("."))
}

/// Checks a target's `table`: the quoted table name, or `(field under
/// table, what is wrong)`.
pub fn check_table(spec: &TableSpec) -> Result<String, (&'static str, String)> {
    let quoted = quote_table(&spec.name).map_err(|m| ("name", m))?;
    if spec.key.is_empty() {
        return Err(("key", "name the key column(s) the upsert matches rows on, e.g. [order_id]".into()));
    }
    let blank = |names: &[String]| names.iter().any(|n| n.trim().is_empty());
    if blank(&spec.key) || blank(&spec.columns) || spec.record_column.as_deref().is_some_and(|c| c.trim().is_empty()) {
        return Err(("columns", "a column name is empty".into()));
    }
    if spec.columns.is_empty() && spec.record_column.is_none() {
        return Err((
            "columns",
            "declare the columns this target may write, e.g. [order_id, total] (fields of a record that are not \
             listed are not written), or a recordColumn that keeps the whole record"
                .into(),
        ));
    }
    if let Some(missing) = spec.key.iter().find(|k| !spec.columns.is_empty() && !spec.columns.contains(k)) {
        return Err(("columns", format!("the key column `{missing}` must be one of the columns written")));
    }
    if let Some(rc) = &spec.record_column
        && spec.key.contains(rc)
    {
        return Err(("recordColumn", format!("`{rc}` is a key column; the whole record goes to another column")));
    }
    Ok(quoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_a_host_and_a_database_and_nothing_secret() {
        let e = parse_endpoint("postgres://db.retail.svc:6543/commerce").unwrap();
        assert_eq!(e, Endpoint { host: "db.retail.svc".into(), port: 6543, database: "commerce".into() });
        assert_eq!(parse_endpoint("postgresql://127.0.0.1/my%20db").unwrap().database, "my db");
        assert_eq!(parse_endpoint("postgres://[::1]/x").unwrap().host, "::1");
        let err = parse_endpoint("postgres://app:s3cret@db/commerce").unwrap_err();
        assert!(err.contains("auth.basic") && !err.contains("s3cret"), "{err}");
        for bad in [
            "https://db/commerce",
            "postgres://db",
            "postgres://db/",
            "postgres://db/a/b",
            "postgres://db/c?sslmode=require",
            "db/c",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_are_quoted_so_no_name_escapes() {
        assert_eq!(quote_ident("order_id"), "\"order_id\"");
        assert_eq!(quote_ident("a\"; DROP TABLE x; --"), "\"a\"\"; DROP TABLE x; --\"");
        assert_eq!(quote_table("warehouse.sales_orders").unwrap(), "\"warehouse\".\"sales_orders\"");
        assert!(quote_table("a.b.c").is_err());
        assert!(quote_table("a.").is_err());
    }
}
