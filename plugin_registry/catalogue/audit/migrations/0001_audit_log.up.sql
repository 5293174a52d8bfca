-- The audit log and the trigger that fills it. Enable it per table with
--   SELECT audit_enable('public.orders');
CREATE TABLE IF NOT EXISTS audit_log (
    id           bigserial   PRIMARY KEY,
    table_schema text        NOT NULL,
    table_name   text        NOT NULL,
    operation    text        NOT NULL CHECK (operation IN ('INSERT', 'UPDATE', 'DELETE')),
    row_before   jsonb,
    row_after    jsonb,
    -- Hasura passes the session as the setting hasura.user (JSON); NULL outside Hasura.
    changed_by   text        DEFAULT (nullif(current_setting('hasura.user', true), '')::jsonb
                                      ->> 'x-hasura-user-id'),
    changed_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS audit_log_table_time
    ON audit_log (table_schema, table_name, changed_at DESC);

CREATE OR REPLACE FUNCTION audit_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
    INSERT INTO audit_log (table_schema, table_name, operation, row_before, row_after)
    VALUES (
        TG_TABLE_SCHEMA,
        TG_TABLE_NAME,
        TG_OP,
        CASE WHEN TG_OP IN ('UPDATE', 'DELETE') THEN to_jsonb(OLD) END,
        CASE WHEN TG_OP IN ('INSERT', 'UPDATE') THEN to_jsonb(NEW) END
    );
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION audit_enable(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS audit_capture ON %s', target);
    EXECUTE format(
        'CREATE TRIGGER audit_capture AFTER INSERT OR UPDATE OR DELETE ON %s '
        'FOR EACH ROW EXECUTE FUNCTION audit_capture()',
        target
    );
END
$$;

CREATE OR REPLACE FUNCTION audit_disable(target regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('DROP TRIGGER IF EXISTS audit_capture ON %s', target);
END
$$;

-- The role PostgREST switches to for readers: it can read the log and nothing else.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_reader') THEN
        CREATE ROLE audit_reader NOLOGIN;
    END IF;
END
$$;
GRANT USAGE ON SCHEMA public TO audit_reader;
GRANT SELECT ON audit_log TO audit_reader;
