-- V004: least-privilege database roles (docs/security.md, "Database roles").
--
--   profile_owner  owns every object and runs profile-migrate (this file runs as it).
--   profile_app    profile-api: EXECUTE on the API's functions and SELECT on what the list pages
--                  read; every write goes through a SECURITY DEFINER function.
--   profile_relay  profile-relay: reads and marks the outbox, purges published rows, keeps the
--                  dead letters; no domain table, no idempotency record.
--
-- The two runtime roles may be NOLOGIN group roles: a DBA grants them to the login users the
-- programs connect as (GRANT profile_app TO api_login). Creating roles needs CREATEROLE, which
-- a managed PostgreSQL gives to its admin user only, so the DBA creates the three roles once
-- (docs/operations.md); this migration only creates a missing runtime role when the migrating
-- user may, and otherwise stops with a message naming it.
--
-- Convention for every later migration: functions are not executable by PUBLIC (default
-- privileges below), so a migration that adds a function GRANTs EXECUTE to the role that calls
-- it, and a migration that adds a table GRANTs exactly the privileges each role needs. A
-- function that writes on a role's behalf is SECURITY DEFINER with SET search_path.

DO $$
DECLARE
    v_role text;
BEGIN
    IF current_user <> 'profile_owner' THEN
        RAISE EXCEPTION 'migrations must run as profile_owner, not %', current_user
            USING HINT = 'Connect as profile_owner, or as a member of it with '
                         'options=-c%20role%3Dprofile_owner in DATABASE_URL (docs/operations.md).';
    END IF;
    FOREACH v_role IN ARRAY ARRAY['profile_app', 'profile_relay'] LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role);
        IF NOT EXISTS (SELECT 1 FROM pg_roles
                        WHERE rolname = current_user AND (rolcreaterole OR rolsuper)) THEN
            RAISE EXCEPTION 'role % does not exist and % may not create it', v_role, current_user
                USING HINT = 'Have a DBA create it first: CREATE ROLE ' || v_role ||
                             ' NOLOGIN (docs/operations.md, "Database roles").';
        END IF;
        EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
    END LOOP;
END;
$$;

-- Nothing of ours is executable by PUBLIC: neither what V001 to V003 made nor what later
-- migrations make (default privileges of profile_owner, the role that creates them). Functions
-- of extensions someone else installed in the schema are left alone.
DO $$
DECLARE
    v_fn regprocedure;
BEGIN
    FOR v_fn IN SELECT p.oid::regprocedure FROM pg_proc p
                 WHERE p.pronamespace = 'public'::regnamespace
                   AND p.proowner = current_user::text::regrole LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', v_fn);
    END LOOP;
END;
$$;
ALTER DEFAULT PRIVILEGES REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- API writes, the profile read and the idempotency clean-up run as the owner: the API role
-- holds no INSERT, UPDATE or DELETE anywhere and never sees an idempotency record or the outbox.
-- Each of these already sets search_path = pg_catalog, public, pg_temp.
ALTER FUNCTION api_put_profile(text, text, bytea, integer, text, text, text, text, jsonb, text)
    SECURITY DEFINER;
ALTER FUNCTION api_watchlist_add(text, text, bytea, integer, text, text, text) SECURITY DEFINER;
ALTER FUNCTION api_watchlist_remove(text, text, bytea, integer, text, text, text)
    SECURITY DEFINER;
ALTER FUNCTION api_history_add(text, text, bytea, integer, text, text, text, integer, integer,
                               timestamptz) SECURITY DEFINER;
ALTER FUNCTION api_rating_put(text, text, bytea, integer, text, text, text, integer, text)
    SECURITY DEFINER;
ALTER FUNCTION api_get_profile(text) SECURITY DEFINER;
ALTER FUNCTION api_idempotency_cleanup(integer) SECURITY DEFINER;
-- Readiness of both programs; neither may read schema_migrations itself.
ALTER FUNCTION schema_version() SECURITY DEFINER;

GRANT EXECUTE ON FUNCTION
    api_put_profile(text, text, bytea, integer, text, text, text, text, jsonb, text),
    api_watchlist_add(text, text, bytea, integer, text, text, text),
    api_watchlist_remove(text, text, bytea, integer, text, text, text),
    api_history_add(text, text, bytea, integer, text, text, text, integer, integer, timestamptz),
    api_rating_put(text, text, bytea, integer, text, text, text, integer, text),
    api_get_profile(text),
    api_idempotency_cleanup(integer),
    api_page_watchlist(text, integer, timestamptz, text),
    api_page_history(text, integer, timestamptz, uuid),
    api_page_continue(text, integer, timestamptz, uuid),
    api_page_ratings(text, integer, timestamptz, text),
    api_page_rating_video(text, text, timestamptz, text),
    schema_version()
    TO profile_app;
-- The page functions stay SECURITY INVOKER so that the planner inlines them into the API's
-- prepared statements (a SECURITY DEFINER function is never inlined): the API role reads the
-- tables they read, and nothing else.
GRANT SELECT ON watchlist_items, history_entries, resume_points, ratings, user_event_seq
    TO profile_app;

-- The relay (relay/outbox.c, relay/lease.c): claim and statistics read the outbox and the dead
-- letters; marks set published_at only; retention deletes; dead letters are inserted, listed
-- and resolved. Advisory locks, pg_locks, pg_stat_activity, LISTEN and NOTIFY need no grant.
GRANT SELECT, DELETE ON outbox TO profile_relay;
GRANT UPDATE (published_at) ON outbox TO profile_relay;
GRANT SELECT, INSERT, DELETE ON outbox_dead_letters TO profile_relay;
GRANT EXECUTE ON FUNCTION schema_version() TO profile_relay;

-- Row-level security narrows the relay's DELETE and UPDATE on the outbox to what it is for: it
-- may delete only published rows (a pending event is never lost by a relay bug) and may never
-- turn a published row back into a pending one. The owner (the API's writes, which run as it)
-- is not subject to these policies; the API role has no privilege on the table at all.
ALTER TABLE outbox ENABLE ROW LEVEL SECURITY;
CREATE POLICY outbox_relay_read ON outbox FOR SELECT TO profile_relay USING (true);
CREATE POLICY outbox_relay_mark ON outbox FOR UPDATE TO profile_relay
    USING (true) WITH CHECK (published_at IS NOT NULL);
CREATE POLICY outbox_relay_purge ON outbox FOR DELETE TO profile_relay
    USING (published_at IS NOT NULL);
