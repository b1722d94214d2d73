-- V004 roles: what each runtime role may do, checked both in the catalogue (exact sets, so a
-- grant added by a later migration must be added here on purpose) and by running statements as
-- the role (SET ROLE inside pg_temp.as_role; pgTAP's own calls stay with the test's superuser).
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(44);

-- Runs p_sql as p_role and returns 'ok <rows>' or the SQLSTATE it failed with.
CREATE FUNCTION pg_temp.as_role(p_role text, p_sql text) RETURNS text
    LANGUAGE plpgsql
AS $$
DECLARE
    v_n bigint;
BEGIN
    EXECUTE format('SET LOCAL ROLE %I', p_role);
    BEGIN
        EXECUTE p_sql;
        GET DIAGNOSTICS v_n = ROW_COUNT;
    EXCEPTION WHEN OTHERS THEN
        RESET ROLE;
        RETURN SQLSTATE;
    END;
    RESET ROLE;
    RETURN 'ok ' || v_n;
END;
$$;

SELECT has_role('profile_owner');
SELECT has_role('profile_app');
SELECT has_role('profile_relay');
SELECT is((SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles
            WHERE rolname = 'profile_app'), false, 'profile_app has no role attribute');
SELECT is((SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls FROM pg_roles
            WHERE rolname = 'profile_relay'), false, 'profile_relay has no role attribute');

-- Ownership: every table and function of the schema belongs to the owner.
SELECT is_empty($$SELECT c.relname FROM pg_class c
                   LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                        AND d.deptype = 'e'
                   WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'S')
                     AND d.objid IS NULL AND c.relowner <> 'profile_owner'::regrole$$,
                'profile_owner owns every table (extensions aside)');
SELECT is_empty($$SELECT p.proname FROM pg_proc p
                   LEFT JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                        AND d.deptype = 'e'
                   WHERE p.pronamespace = 'public'::regnamespace AND d.objid IS NULL
                     AND p.proowner <> 'profile_owner'::regrole$$,
                'profile_owner owns every function (extensions aside)');
SELECT is_empty($$SELECT p.proname FROM pg_proc p
                   WHERE p.proowner = 'profile_owner'::regrole
                     AND (p.proacl IS NULL
                          OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0))$$,
                'PUBLIC may execute none of the schema''s functions');
SELECT ok(EXISTS (SELECT 1 FROM pg_default_acl
                   WHERE defaclrole = 'profile_owner'::regrole AND defaclobjtype = 'f'
                     AND defaclnamespace = 0),
          'functions the owner creates later are not executable by PUBLIC either');

-- Exactly these, per role.
SELECT set_eq($$SELECT p.proname::text FROM pg_proc p
                 WHERE p.proowner = 'profile_owner'::regrole
                   AND has_function_privilege('profile_app', p.oid, 'EXECUTE')$$,
              ARRAY['api_put_profile', 'api_watchlist_add', 'api_watchlist_remove',
                    'api_history_add', 'api_rating_put', 'api_get_profile',
                    'api_idempotency_cleanup', 'api_page_watchlist', 'api_page_history',
                    'api_page_continue', 'api_page_ratings', 'api_page_rating_video',
                    'schema_version', 'outbox_partition', 'api_erase_profile'],
              'profile_app executes the API functions only');
SELECT set_eq($$SELECT p.proname::text FROM pg_proc p
                 WHERE p.proowner = 'profile_owner'::regrole
                   AND has_function_privilege('profile_relay', p.oid, 'EXECUTE')$$,
              ARRAY['schema_version', 'history_retention_purge', 'snapshot_start',
                    'snapshot_step', 'outbox_erase_user'],
              'profile_relay executes the readiness check, history retention, snapshots and erasure purge only');
SELECT set_eq($$SELECT c.relname::text || ' ' || a.privilege_type
                 FROM pg_class c, aclexplode(c.relacl) a
                 WHERE c.relnamespace = 'public'::regnamespace
                   AND a.grantee = 'profile_app'::regrole$$,
              ARRAY['watchlist_items SELECT', 'history_entries SELECT', 'resume_points SELECT',
                    'ratings SELECT', 'user_event_seq SELECT'],
              'profile_app: SELECT on what the list pages read, nothing else');
SELECT set_eq($$SELECT c.relname::text || ' ' || a.privilege_type
                 FROM pg_class c, aclexplode(c.relacl) a
                 WHERE c.relnamespace = 'public'::regnamespace
                   AND a.grantee = 'profile_relay'::regrole$$,
              ARRAY['outbox SELECT', 'outbox DELETE', 'outbox_dead_letters SELECT',
                    'outbox_dead_letters INSERT', 'outbox_dead_letters DELETE',
                    'snapshots SELECT'],
              'profile_relay: table privileges on the outbox, dead letters and snapshot progress only');
SELECT set_eq($$SELECT c.relname::text || '.' || at.attname || ' ' || a.privilege_type
                 FROM pg_attribute at JOIN pg_class c ON c.oid = at.attrelid,
                      aclexplode(at.attacl) a
                 WHERE c.relnamespace = 'public'::regnamespace
                   AND a.grantee IN ('profile_relay'::regrole, 'profile_app'::regrole)$$,
              ARRAY['outbox.published_at UPDATE'],
              'the only column grant: the relay may set outbox.published_at');
SELECT is_definer('public', 'api_put_profile', 'API writes run as the owner (SECURITY DEFINER)');
SELECT is_definer('public', 'api_idempotency_cleanup', 'idempotency clean-up runs as the owner');
SELECT isnt_definer('public', 'api_page_history', 'page functions stay invoker (inlined)');
SELECT is_empty($$SELECT p.proname FROM pg_proc p
                   WHERE p.proowner = 'profile_owner'::regrole AND p.prosecdef
                     AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c
                                      WHERE c LIKE 'search_path=%')$$,
                'every SECURITY DEFINER function pins its search_path');

-- Set-up as the superuser: one pending and one published event for user r1.
SELECT lives_ok($$SELECT api_watchlist_add('r1', NULL, NULL, 60, NULL, 'r1', 'v1')$$);
SELECT lives_ok($$SELECT api_watchlist_add('r1', 'k-r1', sha256('x'), 60, NULL, 'r1', 'v2')$$);
UPDATE outbox SET published_at = now() - interval '2 hours' WHERE user_id = 'r1' AND seq = 1;

-- profile_app: the API's calls work; nothing else does.
SELECT is(pg_temp.as_role('profile_app', $$SELECT * FROM api_watchlist_add('a1', 'k1', sha256('y'), 60, NULL, 'a1', 'v1')$$),
          'ok 1', 'app: a write through its function');
SELECT is(pg_temp.as_role('profile_app', $$SELECT * FROM api_page_watchlist('a1', 10, NULL, NULL)$$),
          'ok 1', 'app: a list page');
SELECT is(pg_temp.as_role('profile_app', $$SELECT * FROM api_get_profile('a1')$$),
          'ok 1', 'app: the profile read');
SELECT is(pg_temp.as_role('profile_app', $$SELECT api_idempotency_cleanup(10)$$),
          'ok 1', 'app: idempotency clean-up');
SELECT is(pg_temp.as_role('profile_app', $$SELECT schema_version()$$), 'ok 1', 'app: readiness');
SELECT is(pg_temp.as_role('profile_app', $$SELECT * FROM idempotency_keys$$), '42501',
          'app cannot read idempotency records');
SELECT is(pg_temp.as_role('profile_app', $$SELECT * FROM outbox$$), '42501',
          'app cannot read the outbox');
SELECT is(pg_temp.as_role('profile_app', $$UPDATE outbox SET published_at = now()$$), '42501',
          'app cannot update the outbox');
SELECT is(pg_temp.as_role('profile_app', $$INSERT INTO watchlist_items (user_id, video_id) VALUES ('a1', 'x')$$),
          '42501', 'app cannot write a domain table directly');
SELECT is(pg_temp.as_role('profile_app', $$SELECT * FROM profiles$$), '42501',
          'app reads profiles only through api_get_profile');
SELECT is(pg_temp.as_role('profile_app', $$SELECT api_emit_event('a1', 'WatchlistUpdated', '{}', NULL)$$),
          '42501', 'app cannot call an internal helper');
SELECT is(pg_temp.as_role('profile_app', $$SELECT * FROM schema_migrations$$), '42501',
          'app cannot read the migration history');
SELECT is(pg_temp.as_role('profile_app', $$SELECT history_retention_purge(30, 10)$$), '42501',
          'app cannot run history retention');

-- profile_relay: claim, mark, dead letter, purge, statistics work; the API's functions and
-- the domain tables do not.
SELECT is(pg_temp.as_role('profile_relay', $$SELECT o.seq FROM outbox o WHERE o.published_at IS NULL AND NOT EXISTS (SELECT 1 FROM outbox_dead_letters d WHERE d.user_id = o.user_id)$$),
          'ok 2', 'relay: claim query');
SELECT is(pg_temp.as_role('profile_relay', $$INSERT INTO outbox_dead_letters (user_id, seq, event_id, error) SELECT user_id, seq, event_id, 'x' FROM outbox WHERE user_id = 'r1' AND seq = 2 ON CONFLICT DO NOTHING$$),
          'ok 1', 'relay: dead letter');
SELECT is(pg_temp.as_role('profile_relay', $$DELETE FROM outbox_dead_letters WHERE user_id = 'r1' RETURNING seq$$),
          'ok 1', 'relay: requeue a dead letter');
SELECT is(pg_temp.as_role('profile_relay', $$DELETE FROM outbox WHERE published_at IS NULL$$),
          'ok 0', 'relay cannot delete a pending event (row-level security)');
SELECT is(pg_temp.as_role('profile_relay', $$UPDATE outbox o SET published_at = now() FROM unnest(ARRAY['a1'], ARRAY[1::bigint]) AS d(user_id, seq) WHERE o.user_id = d.user_id AND o.seq = d.seq AND o.published_at IS NULL$$),
          'ok 1', 'relay: mark published');
SELECT is(pg_temp.as_role('profile_relay', $$UPDATE outbox SET published_at = NULL WHERE user_id = 'r1'$$),
          '42501', 'relay cannot turn a published event back into a pending one');
SELECT is(pg_temp.as_role('profile_relay', $$UPDATE outbox SET payload = '{}' WHERE user_id = 'r1'$$),
          '42501', 'relay cannot change an event');
SELECT is(pg_temp.as_role('profile_relay', $$WITH doomed AS (SELECT user_id, seq FROM outbox WHERE published_at < now() - interval '1 hour' ORDER BY published_at LIMIT 10 FOR UPDATE SKIP LOCKED) DELETE FROM outbox o USING doomed d WHERE o.user_id = d.user_id AND o.seq = d.seq$$),
          'ok 1', 'relay: purge published rows');
SELECT is(pg_temp.as_role('profile_relay', $$SELECT * FROM api_get_profile('a1')$$), '42501',
          'relay cannot call an API function');
SELECT is(pg_temp.as_role('profile_relay', $$SELECT * FROM history_entries$$), '42501',
          'relay cannot read history');
SELECT is(pg_temp.as_role('profile_relay', $$SELECT * FROM idempotency_keys$$), '42501',
          'relay cannot read idempotency records');

SELECT * FROM finish();
ROLLBACK;
