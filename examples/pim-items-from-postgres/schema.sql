-- The product-information database's table the flow reads. `change_seq` grows with every
-- insert and update (a sequence bumped by a trigger), so the poll's watermark is unique
-- and exact: no row is skipped at a page boundary, none is read twice.
CREATE SEQUENCE IF NOT EXISTS products_change_seq;
CREATE TABLE IF NOT EXISTS products (
    product_id   bigint PRIMARY KEY,
    sku          text NOT NULL UNIQUE,
    title        text NOT NULL,
    list_price   numeric(12, 2) NOT NULL,
    currency     char(3) NOT NULL,
    status       text NOT NULL DEFAULT 'active',
    updated_at   timestamptz NOT NULL DEFAULT now(),
    change_seq   bigint NOT NULL DEFAULT nextval('products_change_seq')
);
CREATE OR REPLACE FUNCTION products_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    NEW.change_seq := nextval('products_change_seq');
    RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER products_touch BEFORE UPDATE ON products
    FOR EACH ROW EXECUTE FUNCTION products_touch();
CREATE INDEX IF NOT EXISTS products_change_seq_idx ON products (change_seq);
