-- V005: history retention (HISTORY_RETENTION_DAYS, docs/operations.md). The relay removes
-- history entries older than the retention in small batches, each its own short transaction;
-- resume_points (the continue view, V003) is a table of its own and is not touched.
--
-- What the batches scan, oldest first. On a large existing table a DBA may build it beforehand
-- without blocking writes (CREATE INDEX CONCURRENTLY history_entries_watched_idx ON
-- history_entries (watched_at)); IF NOT EXISTS then keeps this migration from building it again.
CREATE INDEX IF NOT EXISTS history_entries_watched_idx ON history_entries (watched_at);

-- Deletes up to p_batch entries watched more than p_days days ago, oldest first, and returns
-- how many; NULL when another session is running a batch right now (transaction-scoped advisory
-- lock, class 7302: several relays never delete at the same time, and nothing waits). Rows some
-- other transaction has locked are skipped, not waited for. Runs as the owner: the relay role
-- holds no privilege on history_entries.
CREATE FUNCTION history_retention_purge(p_days integer, p_batch integer) RETURNS integer
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_n integer;
BEGIN
    IF p_days IS NULL OR p_days < 1 THEN
        RAISE EXCEPTION 'retention must be at least 1 day' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_batch IS NULL OR p_batch < 1 OR p_batch > 10000 THEN
        RAISE EXCEPTION 'batch must be from 1 to 10000' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_try_advisory_xact_lock(7302, 0) THEN
        RETURN NULL;
    END IF;
    DELETE FROM history_entries e
     USING (SELECT e0.user_id, e0.entry_id FROM history_entries e0
             WHERE e0.watched_at < now() - make_interval(days => p_days)
             ORDER BY e0.watched_at
             LIMIT p_batch
             FOR UPDATE SKIP LOCKED) d
     WHERE e.user_id = d.user_id AND e.entry_id = d.entry_id;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    RETURN v_n;
END;
$$;

-- V004's convention: only the role that calls a function may execute it.
GRANT EXECUTE ON FUNCTION history_retention_purge(integer, integer) TO profile_relay;
