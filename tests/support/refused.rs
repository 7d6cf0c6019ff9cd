//! Manifests the CRDs must refuse, each with what the refusal says: checked offline
//! against the committed CRDs (`tests/tests/crd_rules.rs`) and by a real API server
//! (`tests/tests/cluster_crds.rs`).

/// A valid Connector spec (the base of the Connector cases).
pub const CONNECTOR: &str = "{type: rest, endpoint: 'https://erp.example.com/api'}";
/// A valid SyncFlow spec.
pub const FLOW: &str = "{source: {connectorRef: shop, entity: orders, trigger: {webhook: {}}}, \
                    targets: [{connectorRef: erp, entity: salesOrder}]}";
/// A valid Mapping spec.
pub const MAPPING: &str = "{program: '.', tests: [{name: passes through, input: {}, output: {}}]}";

/// (kind, spec, what the refusal must say). Each CEL rule of the CRDs has at least one;
/// the schema's own keywords (required fields, bounds, oneOf, enums, list keys) too.
pub const REFUSED: &[(&str, &str, &str)] = &[
    // Connector: CEL.
    ("Connector", "{type: rest, endpoint: erp.example.com/api}", "endpoint must be an http or https URL"),
    ("Connector", "{type: rest, endpoint: 'https://'}", "endpoint must be an http or https URL"),
    ("Connector", "{type: rest, idempotencyHeader: Idem Key}", "idempotencyHeader must be an HTTP header name"),
    // A postgres Connector: a database URL without credentials, and only there; basic login.
    ("Connector", "{type: rest, endpoint: 'postgres://db/commerce'}", "endpoint must be an http or https URL"),
    (
        "Connector",
        "{type: postgres, endpoint: 'https://db.example.com/commerce'}",
        "a postgres Connector's endpoint is postgres://HOST[:PORT]/DATABASE",
    ),
    (
        "Connector",
        "{type: postgres, endpoint: 'postgres://app:pw@db/commerce'}",
        "a postgres Connector's endpoint is postgres://HOST[:PORT]/DATABASE",
    ),
    (
        "Connector",
        "{type: postgres, endpoint: 'postgres://db:5432'}",
        "a postgres Connector's endpoint is postgres://HOST[:PORT]/DATABASE",
    ),
    ("Connector", "{type: postgres}", "a postgres Connector's endpoint is postgres://HOST[:PORT]/DATABASE"),
    (
        "Connector",
        "{type: postgres, endpoint: 'postgres://db/commerce', auth: {bearer: {secretRef: {name: s, key: k}}}}",
        "a postgres Connector logs in with auth.basic",
    ),
    (
        "Connector",
        "{type: rest, database: {sslMode: disable}}",
        "database settings (sslMode, caSecretRef) are for type postgres",
    ),
    (
        "Connector",
        "{type: postgres, endpoint: 'postgres://db/c', database: {sslMode: require}}",
        "\"require\" is not one of",
    ),
    (
        "Connector",
        "{type: rest, auth: {header: {name: X Api Key, secretRef: {name: s, key: k}}}}",
        "name must be an HTTP header name",
    ),
    (
        "Connector",
        "{type: rest, auth: {oauth2ClientCredentials: {tokenUrl: login.example.com/token, \
          clientIdSecretRef: {name: s, key: id}, clientSecretSecretRef: {name: s, key: secret}}}}",
        "tokenUrl must be an http or https URL",
    ),
    (
        "Connector",
        "{type: rest, auth: {token: {secretRef: {name: s, key: k}}}}",
        "auth.token is for types whose token header is known",
    ),
    (
        "Connector",
        "{type: rest, webhook: {signature: hmac-sha256, secretRef: {name: s, key: k}}}",
        "signatures hmac-sha256 and api-key need header",
    ),
    (
        "Connector",
        "{type: rest, webhook: {signature: api-key, header: 'X Api Key', secretRef: {name: s, key: k}}}",
        "header must be an HTTP header name",
    ),
    (
        "Connector",
        "{type: amazon-sp, limits: {operations: [{name: getOrders, method: GET, path: orders/v0/orders, \
          requestsPerSecond: 0.0167, burst: 20}]}}",
        "path must start with /",
    ),
    // Connector: schema. Limits are positive.
    // The API server does not apply `minimum` to a number that is 0: a CEL rule does.
    ("Connector", "{type: rest, limits: {requestsPerSecond: 0}}", "requestsPerSecond must be at least 0.0001"),
    (
        "Connector",
        "{type: rest, limits: {requestsPerSecond: 0.00001}}",
        ".spec.limits.requestsPerSecond: 0.00001 is below the minimum",
    ),
    (
        "Connector",
        "{type: amazon-sp, limits: {operations: [{name: getOrders, method: GET, path: /orders/v0/orders, \
          requestsPerSecond: 0, burst: 20}]}}",
        "an operation's requestsPerSecond must be at least 0.0001",
    ),
    ("Connector", "{type: rest, limits: {burst: 0}}", ".spec.limits.burst: 0 is below the minimum"),
    ("Connector", "{type: rest, limits: {concurrency: 0}}", ".spec.limits.concurrency: 0 is below the minimum"),
    // A webhook needs its signature scheme and its secret.
    ("Connector", "{type: shopify, webhook: {signature: shopify-hmac-sha256}}", ".spec.webhook: secretRef is required"),
    ("Connector", "{type: shopify, webhook: {secretRef: {name: s, key: k}}}", ".spec.webhook: signature is required"),
    (
        "Connector",
        "{type: shopify, webhook: {signature: sha1, secretRef: {name: s, key: k}}}",
        "\"sha1\" is not one of",
    ),
    // An auth scheme: exactly one, with its required fields.
    (
        "Connector",
        "{type: rest, auth: {bearer: {secretRef: {name: a, key: b}}, header: {name: X, secretRef: {name: a, key: b}}}}",
        ".spec.auth: must match exactly one",
    ),
    (
        "Connector",
        "{type: rest, auth: {basic: {usernameSecretRef: {name: s, key: u}}}}",
        "passwordSecretRef is required",
    ),
    ("Connector", "{type: rest, auth: {bearer: {}}}", ".spec.auth.bearer: secretRef is required"),
    (
        "Connector",
        "{type: rest, auth: {header: {secretRef: {name: s, key: k}}}}",
        ".spec.auth.header: name is required",
    ),
    // SyncFlow: CEL.
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {refetch: {path: /v2/orders, id: .data.id}}}}, \
          targets: [{connectorRef: erp, entity: x}]}",
        "path must contain {id}",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1m, path: /x, sql: 'SELECT 1'}}}, \
          targets: [{connectorRef: erp, entity: x}]}",
        "set path (an HTTP API source) or sql (a postgres source)",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1m}}}, targets: [{connectorRef: erp, entity: x}]}",
        "set path (an HTTP API source) or sql (a postgres source)",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, \
          targets: [{connectorRef: shop, entity: x, graphql: {mutation: 'query { shop { name } }'}}]}",
        "mutation must be a GraphQL mutation document",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, \
          targets: [{connectorRef: erp, entity: x, table: {name: t, key: [], columns: [id]}}]}",
        ".spec.targets[0].table.key: fewer than minItems 1 items",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, \
          targets: [{connectorRef: erp, entity: x, table: {name: t, key: [id]}}]}",
        "declare the columns this target may write (columns), or a recordColumn for the whole record",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}, poll: {interval: 1m, path: /x}}}, \
          targets: [{connectorRef: erp, entity: x}]}",
        "set exactly one of webhook, poll or file",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {}}, targets: [{connectorRef: erp, entity: x}]}",
        "set exactly one of webhook, poll or file",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: []}",
        "a flow needs at least one target",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: [{connectorRef: erp, entity: x}], \
          mode: batch, schedule: '0 2 * * *'}",
        "a webhook source must always be up to answer its sender",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: [{connectorRef: erp, entity: x}], \
          runner: {replicas: 3}}",
        "replicas above 1 need a shared queue: set queue.jetstream",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: [{connectorRef: erp, entity: x}], \
          runner: {replicas: 3, queue: {jetstream: {partitions: 0}}}}",
        ".spec.runner.queue.jetstream.partitions: 0 is below the minimum",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1h, path: /x}}}, \
          targets: [{connectorRef: erp, entity: x}], mode: batch}",
        "a batch flow needs a schedule",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1h, path: /x}}}, \
          targets: [{connectorRef: erp, entity: x}], schedule: '0 2 * * *'}",
        "a continuous flow runs all the time",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {poll: {interval: 1h, path: /x}}}, \
          targets: [{connectorRef: erp, entity: x}], timeZone: Europe/Paris}",
        "a continuous flow runs all the time",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, \
          targets: [{connectorRef: erp, entity: x}, {connectorRef: wms, entity: stock, operation: upsert}]}",
        "an upsert is sent to <path>/<ordering key>: set spec.delivery.orderingKey",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, \
          targets: [{connectorRef: erp, entity: orders}, {name: wms, connectorRef: wms, entity: stock}, {connectorRef: erp, entity: returns}]}",
        "two targets have the same name (a target's name defaults to its connectorRef): give each a unique name",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {file: {directory: /in, format: csv, processedDirectory: /in}}}, \
          targets: [{connectorRef: erp, entity: x}]}",
        "processedDirectory must differ from directory",
    ),
    // SyncFlow: schema.
    ("SyncFlow", "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}}", ".spec: targets is required"),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: [{connectorRef: erp, entity: x}], \
          mode: nightly}",
        "\"nightly\" is not one of",
    ),
    (
        "SyncFlow",
        "{source: {connectorRef: s, entity: e, trigger: {webhook: {}}}, targets: [{connectorRef: erp, entity: x}], \
          delivery: {retry: {maxAttempts: 0}}}",
        ".spec.delivery.retry.maxAttempts: 0 is below the minimum",
    ),
    // Mapping: CEL.
    (
        "Mapping",
        "{program: '.', tests: [{name: '', input: {}, output: {}}]}",
        "a test needs a name that says what it shows",
    ),
    (
        "Mapping",
        "{program: '.', tests: [{name: '  ', input: {}, output: {}}]}",
        "a test needs a name that says what it shows",
    ),
    // Mapping: schema.
    ("Mapping", "{program: '.', tests: [{input: {}, output: {}}]}", ".spec.tests[0]: name is required"),
    (
        "Mapping",
        "{program: '.', tests: [{name: a, input: 1, output: 1}, {name: a, input: 2, output: 2}]}",
        ".spec.tests[1]: duplicate entry",
    ),
    ("Mapping", "{program: ''}", ".spec.program: \"\" is shorter than minLength"),
    ("Mapping", "{program: '.', tests: [{name: a, input: {}}]}", ".spec.tests[0]: output is required"),
];

/// Whether a refusal's expected text is a CEL rule's message (the same words from the
/// API server), rather than the offline schema checker's wording of a schema keyword.
pub fn is_cel_message(want: &str) -> bool {
    !want.starts_with('.') && !want.contains("is not one of") && !want.ends_with("is required")
}

/// A manifest of `kind` named `name` with this spec (YAML flow style).
pub fn manifest(kind: &str, name: &str, spec: &str) -> serde_json::Value {
    let spec: serde_json::Value = serde_saphyr::from_str(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    serde_json::json!({"apiVersion": "entrepot.io/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}
