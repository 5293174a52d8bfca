DROP FUNCTION IF EXISTS audit_disable(regclass);
DROP FUNCTION IF EXISTS audit_enable(regclass);
DROP TABLE IF EXISTS audit_log;
DROP FUNCTION IF EXISTS audit_capture();
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_reader') THEN
        REVOKE USAGE ON SCHEMA public FROM audit_reader;
        DROP ROLE audit_reader;
    END IF;
END
$$;
