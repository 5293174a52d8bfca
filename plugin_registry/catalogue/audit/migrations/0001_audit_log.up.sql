-- The audit log and the trigger function that fills it, in the plugin's own schema
-- (audit). Record a table's changes with, as the table's owner:
--   CREATE TRIGGER audit_capture AFTER INSERT OR UPDATE OR DELETE ON public.orders
--     FOR EACH ROW EXECUTE FUNCTION audit.audit_capture();
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

-- Runs with the plugin's rights (SECURITY DEFINER), whoever changes the audited table:
-- it can write the log and nothing else.
CREATE OR REPLACE FUNCTION audit_capture() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = audit, pg_temp AS $$
BEGIN
    INSERT INTO audit.audit_log (table_schema, table_name, operation, row_before, row_after)
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

-- PostgREST's pre-request check: reads only, by tokens whose Hasura default role is
-- audit_reader.
CREATE OR REPLACE FUNCTION check_reader() RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    claims jsonb := nullif(current_setting('request.jwt.claims', true), '')::jsonb;
BEGIN
    IF coalesce(current_setting('request.method', true), '') NOT IN ('GET', 'HEAD') THEN
        RAISE EXCEPTION 'the audit log is read-only' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF coalesce(claims -> 'https://hasura.io/jwt/claims' ->> 'x-hasura-default-role', '')
            <> 'audit_reader' THEN
        RAISE EXCEPTION 'only audit_reader tokens may read the audit log'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;
