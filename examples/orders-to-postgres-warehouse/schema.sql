-- The warehouse table the flow writes (create it before starting the flow). One row per
-- order, overwritten by each newer revision; the whole canonical order is kept as jsonb.
CREATE TABLE IF NOT EXISTS sales_orders (
    order_id        text PRIMARY KEY,
    order_number    text,
    source_system   text NOT NULL,
    source_version  timestamptz NOT NULL,
    placed_at       timestamptz NOT NULL,
    currency        char(3) NOT NULL,
    customer_email  text NOT NULL,
    line_count      integer NOT NULL CHECK (line_count > 0),
    grand_total     bigint NOT NULL,
    tax_total       bigint NOT NULL,
    document        jsonb NOT NULL,
    loaded_at       timestamptz NOT NULL DEFAULT now()
);
