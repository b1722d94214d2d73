-- V001 and V003 structure: every table, column type, nullability, primary key, index, constraint.
BEGIN;
CREATE EXTENSION IF NOT EXISTS pgtap;
SELECT plan(179);

SELECT tables_are('public', ARRAY['profiles', 'watchlist_items', 'history_entries', 'resume_points', 'ratings', 'user_event_seq', 'outbox', 'outbox_dead_letters', 'idempotency_keys', 'snapshots', 'schema_migrations']::name[], 'exactly the V001, V003 and V010 tables plus the migration history');

-- profiles
SELECT columns_are('profiles', ARRAY['user_id', 'display_name', 'avatar_url', 'preferences', 'version', 'created_at', 'updated_at']::name[]);
SELECT col_type_is('profiles', 'user_id', 'text');
SELECT col_not_null('profiles', 'user_id');
SELECT col_type_is('profiles', 'display_name', 'text');
SELECT col_not_null('profiles', 'display_name');
SELECT col_type_is('profiles', 'avatar_url', 'text');
SELECT col_is_null('profiles', 'avatar_url');
SELECT col_type_is('profiles', 'preferences', 'jsonb');
SELECT col_not_null('profiles', 'preferences');
SELECT col_type_is('profiles', 'version', 'bigint');
SELECT col_not_null('profiles', 'version');
SELECT col_type_is('profiles', 'created_at', 'timestamp with time zone');
SELECT col_not_null('profiles', 'created_at');
SELECT col_type_is('profiles', 'updated_at', 'timestamp with time zone');
SELECT col_not_null('profiles', 'updated_at');
SELECT col_is_pk('profiles', ARRAY['user_id']::name[]);
SELECT indexes_are('profiles', ARRAY['profiles_pkey']::name[]);
SELECT is(pg_get_indexdef('profiles_pkey'::regclass), 'CREATE UNIQUE INDEX profiles_pkey ON public.profiles USING btree (user_id)', 'profiles_pkey definition');
SELECT set_eq($$SELECT conname::text FROM pg_constraint WHERE conrelid = 'profiles'::regclass$$, ARRAY['profiles_pkey', 'profiles_user_id_format', 'profiles_display_name_length', 'profiles_display_name_no_controls', 'profiles_avatar_url_format', 'profiles_preferences_object', 'profiles_version_positive'], 'profiles constraints');

-- watchlist_items
SELECT columns_are('watchlist_items', ARRAY['user_id', 'video_id', 'added_at']::name[]);
SELECT col_type_is('watchlist_items', 'user_id', 'text');
SELECT col_not_null('watchlist_items', 'user_id');
SELECT col_type_is('watchlist_items', 'video_id', 'text');
SELECT col_not_null('watchlist_items', 'video_id');
SELECT col_type_is('watchlist_items', 'added_at', 'timestamp with time zone');
SELECT col_not_null('watchlist_items', 'added_at');
SELECT col_is_pk('watchlist_items', ARRAY['user_id', 'video_id']::name[]);
SELECT indexes_are('watchlist_items', ARRAY['watchlist_items_pkey', 'watchlist_items_user_added_idx']::name[]);
SELECT is(pg_get_indexdef('watchlist_items_pkey'::regclass), 'CREATE UNIQUE INDEX watchlist_items_pkey ON public.watchlist_items USING btree (user_id, video_id)', 'watchlist_items_pkey definition');
SELECT is(pg_get_indexdef('watchlist_items_user_added_idx'::regclass), 'CREATE INDEX watchlist_items_user_added_idx ON public.watchlist_items USING btree (user_id, added_at DESC, video_id DESC)', 'watchlist_items_user_added_idx definition');
SELECT set_eq($$SELECT conname::text FROM pg_constraint WHERE conrelid = 'watchlist_items'::regclass$$, ARRAY['watchlist_items_pkey', 'watchlist_items_user_id_format', 'watchlist_items_video_id_format'], 'watchlist_items constraints');

-- history_entries
SELECT columns_are('history_entries', ARRAY['user_id', 'entry_id', 'video_id', 'position_seconds', 'duration_seconds', 'watched_at']::name[]);
SELECT col_type_is('history_entries', 'user_id', 'text');
SELECT col_not_null('history_entries', 'user_id');
SELECT col_type_is('history_entries', 'entry_id', 'uuid');
SELECT col_not_null('history_entries', 'entry_id');
SELECT col_type_is('history_entries', 'video_id', 'text');
SELECT col_not_null('history_entries', 'video_id');
SELECT col_type_is('history_entries', 'position_seconds', 'integer');
SELECT col_not_null('history_entries', 'position_seconds');
SELECT col_type_is('history_entries', 'duration_seconds', 'integer');
SELECT col_is_null('history_entries', 'duration_seconds');
SELECT col_type_is('history_entries', 'watched_at', 'timestamp with time zone');
SELECT col_not_null('history_entries', 'watched_at');
SELECT col_is_pk('history_entries', ARRAY['user_id', 'entry_id']::name[]);
SELECT indexes_are('history_entries', ARRAY['history_entries_pkey', 'history_entries_user_watched_cover_idx', 'history_entries_user_video_watched_idx', 'history_entries_watched_idx']::name[]);
SELECT is(pg_get_indexdef('history_entries_pkey'::regclass), 'CREATE UNIQUE INDEX history_entries_pkey ON public.history_entries USING btree (user_id, entry_id)', 'history_entries_pkey definition');
SELECT is(pg_get_indexdef('history_entries_user_watched_cover_idx'::regclass), 'CREATE INDEX history_entries_user_watched_cover_idx ON public.history_entries USING btree (user_id, watched_at DESC, entry_id DESC) INCLUDE (video_id, position_seconds, duration_seconds)', 'history_entries_user_watched_cover_idx definition (V008)');
SELECT is(pg_get_indexdef('history_entries_user_video_watched_idx'::regclass), 'CREATE INDEX history_entries_user_video_watched_idx ON public.history_entries USING btree (user_id, video_id, watched_at DESC, entry_id DESC)', 'history_entries_user_video_watched_idx definition');
SELECT set_eq($$SELECT conname::text FROM pg_constraint WHERE conrelid = 'history_entries'::regclass$$, ARRAY['history_entries_pkey', 'history_entries_user_id_format', 'history_entries_video_id_format', 'history_entries_position_range', 'history_entries_duration_range', 'history_entries_position_within_duration'], 'history_entries constraints');

-- resume_points (V003)
SELECT columns_are('resume_points', ARRAY['user_id', 'video_id', 'entry_id', 'position_seconds', 'duration_seconds', 'watched_at']::name[]);
SELECT col_type_is('resume_points', 'user_id', 'text');
SELECT col_not_null('resume_points', 'user_id');
SELECT col_type_is('resume_points', 'video_id', 'text');
SELECT col_not_null('resume_points', 'video_id');
SELECT col_type_is('resume_points', 'entry_id', 'uuid');
SELECT col_not_null('resume_points', 'entry_id');
SELECT col_type_is('resume_points', 'position_seconds', 'integer');
SELECT col_not_null('resume_points', 'position_seconds');
SELECT col_type_is('resume_points', 'duration_seconds', 'integer');
SELECT col_is_null('resume_points', 'duration_seconds');
SELECT col_type_is('resume_points', 'watched_at', 'timestamp with time zone');
SELECT col_not_null('resume_points', 'watched_at');
SELECT col_is_pk('resume_points', ARRAY['user_id', 'video_id']::name[]);
SELECT indexes_are('resume_points', ARRAY['resume_points_pkey', 'resume_points_user_unfinished_idx']::name[]);
SELECT is(pg_get_indexdef('resume_points_pkey'::regclass), 'CREATE UNIQUE INDEX resume_points_pkey ON public.resume_points USING btree (user_id, video_id)', 'resume_points_pkey definition');
SELECT is(pg_get_indexdef('resume_points_user_unfinished_idx'::regclass), 'CREATE INDEX resume_points_user_unfinished_idx ON public.resume_points USING btree (user_id, watched_at DESC, entry_id DESC) INCLUDE (video_id, position_seconds, duration_seconds) WHERE ((duration_seconds IS NULL) OR (position_seconds < duration_seconds))', 'resume_points_user_unfinished_idx definition');
SELECT set_eq($$SELECT conname::text FROM pg_constraint WHERE conrelid = 'resume_points'::regclass$$, ARRAY['resume_points_pkey', 'resume_points_user_id_format', 'resume_points_video_id_format', 'resume_points_position_range', 'resume_points_duration_range', 'resume_points_position_within_duration'], 'resume_points constraints');

-- ratings
SELECT columns_are('ratings', ARRAY['user_id', 'video_id', 'rating', 'review', 'created_at', 'updated_at']::name[]);
SELECT col_type_is('ratings', 'user_id', 'text');
SELECT col_not_null('ratings', 'user_id');
SELECT col_type_is('ratings', 'video_id', 'text');
SELECT col_not_null('ratings', 'video_id');
SELECT col_type_is('ratings', 'rating', 'smallint');
SELECT col_not_null('ratings', 'rating');
SELECT col_type_is('ratings', 'review', 'text');
SELECT col_is_null('ratings', 'review');
SELECT col_type_is('ratings', 'created_at', 'timestamp with time zone');
SELECT col_not_null('ratings', 'created_at');
SELECT col_type_is('ratings', 'updated_at', 'timestamp with time zone');
SELECT col_not_null('ratings', 'updated_at');
SELECT col_is_pk('ratings', ARRAY['user_id', 'video_id']::name[]);
SELECT indexes_are('ratings', ARRAY['ratings_pkey', 'ratings_user_updated_idx']::name[]);
SELECT is(pg_get_indexdef('ratings_pkey'::regclass), 'CREATE UNIQUE INDEX ratings_pkey ON public.ratings USING btree (user_id, video_id)', 'ratings_pkey definition');
SELECT is(pg_get_indexdef('ratings_user_updated_idx'::regclass), 'CREATE INDEX ratings_user_updated_idx ON public.ratings USING btree (user_id, updated_at DESC, video_id DESC)', 'ratings_user_updated_idx definition');
SELECT set_eq($$SELECT conname::text FROM pg_constraint WHERE conrelid = 'ratings'::regclass$$, ARRAY['ratings_pkey', 'ratings_user_id_format', 'ratings_video_id_format', 'ratings_rating_range', 'ratings_review_length'], 'ratings constraints');

-- user_event_seq
SELECT columns_are('user_event_seq', ARRAY['user_id', 'last_seq', 'last_event_at']::name[]);
SELECT col_type_is('user_event_seq', 'user_id', 'text');
SELECT col_not_null('user_event_seq', 'user_id');
SELECT col_type_is('user_event_seq', 'last_seq', 'bigint');
SELECT col_not_null('user_event_seq', 'last_seq');
SELECT col_type_is('user_event_seq', 'last_event_at', 'timestamp with time zone');
SELECT col_not_null('user_event_seq', 'last_event_at');
SELECT col_is_pk('user_event_seq', ARRAY['user_id']::name[]);
SELECT indexes_are('user_event_seq', ARRAY['user_event_seq_pkey']::name[]);
SELECT is(pg_get_indexdef('user_event_seq_pkey'::regclass), 'CREATE UNIQUE INDEX user_event_seq_pkey ON public.user_event_seq USING btree (user_id)', 'user_event_seq_pkey definition');
SELECT set_eq($$SELECT conname::text FROM pg_constraint WHERE conrelid = 'user_event_seq'::regclass$$, ARRAY['user_event_seq_pkey', 'user_event_seq_positive'], 'user_event_seq constraints');

-- outbox
SELECT columns_are('outbox', ARRAY['user_id', 'seq', 'event_id', 'event_type', 'partition_no', 'payload', 'traceparent', 'created_at', 'published_at', 'emitted_at', 'snapshot_id']::name[]);
SELECT col_type_is('outbox', 'user_id', 'text');
SELECT col_not_null('outbox', 'user_id');
SELECT col_type_is('outbox', 'seq', 'bigint');
SELECT col_not_null('outbox', 'seq');
SELECT col_type_is('outbox', 'event_id', 'uuid');
SELECT col_not_null('outbox', 'event_id');
SELECT col_type_is('outbox', 'event_type', 'text');
SELECT col_not_null('outbox', 'event_type');
SELECT col_type_is('outbox', 'partition_no', 'smallint');
SELECT col_not_null('outbox', 'partition_no');
SELECT col_type_is('outbox', 'payload', 'json');
SELECT col_not_null('outbox', 'payload');
SELECT col_type_is('outbox', 'traceparent', 'text');
SELECT col_is_null('outbox', 'traceparent');
SELECT col_type_is('outbox', 'created_at', 'timestamp with time zone');
SELECT col_not_null('outbox', 'created_at');
SELECT col_type_is('outbox', 'published_at', 'timestamp with time zone');
SELECT col_is_null('outbox', 'published_at');
SELECT col_is_pk('outbox', ARRAY['user_id', 'seq']::name[]);
SELECT indexes_are('outbox', ARRAY['outbox_pkey', 'outbox_event_id_key', 'outbox_pending_idx', 'outbox_published_idx', 'outbox_profile_deleted_idx']::name[]);
SELECT is(pg_get_indexdef('outbox_pkey'::regclass), 'CREATE UNIQUE INDEX outbox_pkey ON public.outbox USING btree (user_id, seq)', 'outbox_pkey definition');
SELECT is(pg_get_indexdef('outbox_event_id_key'::regclass), 'CREATE UNIQUE INDEX outbox_event_id_key ON public.outbox USING btree (event_id)', 'outbox_event_id_key definition');
SELECT is(pg_get_indexdef('outbox_pending_idx'::regclass), 'CREATE INDEX outbox_pending_idx ON public.outbox USING btree (partition_no, user_id, seq) WHERE (published_at IS NULL)', 'outbox_pending_idx definition');
SELECT is(pg_get_indexdef('outbox_published_idx'::regclass), 'CREATE INDEX outbox_published_idx ON public.outbox USING btree (published_at) WHERE (published_at IS NOT NULL)', 'outbox_published_idx definition');
SELECT set_eq($$SELECT conname::text FROM pg_constraint WHERE conrelid = 'outbox'::regclass$$, ARRAY['outbox_pkey', 'outbox_event_id_key', 'outbox_seq_positive', 'outbox_event_type_known', 'outbox_traceparent_format'], 'outbox constraints');

-- outbox_dead_letters
SELECT columns_are('outbox_dead_letters', ARRAY['user_id', 'seq', 'event_id', 'error', 'failed_at']::name[]);
SELECT col_type_is('outbox_dead_letters', 'user_id', 'text');
SELECT col_not_null('outbox_dead_letters', 'user_id');
SELECT col_type_is('outbox_dead_letters', 'seq', 'bigint');
SELECT col_not_null('outbox_dead_letters', 'seq');
SELECT col_type_is('outbox_dead_letters', 'event_id', 'uuid');
SELECT col_not_null('outbox_dead_letters', 'event_id');
SELECT col_type_is('outbox_dead_letters', 'error', 'text');
SELECT col_not_null('outbox_dead_letters', 'error');
SELECT col_type_is('outbox_dead_letters', 'failed_at', 'timestamp with time zone');
SELECT col_not_null('outbox_dead_letters', 'failed_at');
SELECT col_is_pk('outbox_dead_letters', ARRAY['user_id', 'seq']::name[]);
SELECT indexes_are('outbox_dead_letters', ARRAY['outbox_dead_letters_pkey']::name[]);
SELECT is(pg_get_indexdef('outbox_dead_letters_pkey'::regclass), 'CREATE UNIQUE INDEX outbox_dead_letters_pkey ON public.outbox_dead_letters USING btree (user_id, seq)', 'outbox_dead_letters_pkey definition');
SELECT set_eq($$SELECT conname::text FROM pg_constraint WHERE conrelid = 'outbox_dead_letters'::regclass$$, ARRAY['outbox_dead_letters_pkey', 'outbox_dead_letters_outbox_fkey'], 'outbox_dead_letters constraints');

-- idempotency_keys
SELECT columns_are('idempotency_keys', ARRAY['caller', 'idem_key', 'request_hash', 'status', 'response_body', 'etag', 'location', 'created_at', 'expires_at']::name[]);
SELECT col_type_is('idempotency_keys', 'caller', 'text');
SELECT col_not_null('idempotency_keys', 'caller');
SELECT col_type_is('idempotency_keys', 'idem_key', 'text');
SELECT col_not_null('idempotency_keys', 'idem_key');
SELECT col_type_is('idempotency_keys', 'request_hash', 'bytea');
SELECT col_not_null('idempotency_keys', 'request_hash');
SELECT col_type_is('idempotency_keys', 'status', 'smallint');
SELECT col_not_null('idempotency_keys', 'status');
SELECT col_type_is('idempotency_keys', 'response_body', 'text');
SELECT col_not_null('idempotency_keys', 'response_body');
SELECT col_type_is('idempotency_keys', 'etag', 'text');
SELECT col_is_null('idempotency_keys', 'etag');
SELECT col_type_is('idempotency_keys', 'location', 'text');
SELECT col_is_null('idempotency_keys', 'location');
SELECT col_type_is('idempotency_keys', 'created_at', 'timestamp with time zone');
SELECT col_not_null('idempotency_keys', 'created_at');
SELECT col_type_is('idempotency_keys', 'expires_at', 'timestamp with time zone');
SELECT col_not_null('idempotency_keys', 'expires_at');
SELECT col_is_pk('idempotency_keys', ARRAY['caller', 'idem_key']::name[]);
SELECT indexes_are('idempotency_keys', ARRAY['idempotency_keys_pkey', 'idempotency_keys_expires_idx']::name[]);
SELECT is(pg_get_indexdef('idempotency_keys_pkey'::regclass), 'CREATE UNIQUE INDEX idempotency_keys_pkey ON public.idempotency_keys USING btree (caller, idem_key)', 'idempotency_keys_pkey definition');
SELECT is(pg_get_indexdef('idempotency_keys_expires_idx'::regclass), 'CREATE INDEX idempotency_keys_expires_idx ON public.idempotency_keys USING btree (expires_at)', 'idempotency_keys_expires_idx definition');
SELECT set_eq($$SELECT conname::text FROM pg_constraint WHERE conrelid = 'idempotency_keys'::regclass$$, ARRAY['idempotency_keys_pkey', 'idempotency_keys_key_format', 'idempotency_keys_status_range', 'idempotency_keys_hash_length'], 'idempotency_keys constraints');

-- defaults and generated columns
SELECT col_default_is('profiles', 'preferences', '{}'::jsonb);
SELECT col_default_is('profiles', 'version', '1');
SELECT col_has_default('history_entries', 'entry_id');
SELECT col_has_default('outbox', 'event_id');
SELECT is((SELECT attgenerated::text FROM pg_attribute WHERE attrelid = 'outbox'::regclass AND attname = 'partition_no'), 's', 'outbox.partition_no is a stored generated column');
SELECT fk_ok('outbox_dead_letters', ARRAY['user_id', 'seq'], 'outbox', ARRAY['user_id', 'seq']);
SELECT is((SELECT confdeltype::text FROM pg_constraint WHERE conname = 'outbox_dead_letters_outbox_fkey'), 'c', 'dead letters go with their outbox row');
SELECT ok((SELECT reloptions @> ARRAY['fillfactor=90', 'autovacuum_vacuum_scale_factor=0.01', 'autovacuum_vacuum_insert_scale_factor=0.01'] FROM pg_class WHERE oid = 'outbox'::regclass), 'outbox storage parameters');

-- outbox_partition
SELECT volatility_is('outbox_partition', ARRAY['text'], 'immutable');
SELECT is(outbox_partition('u1'), (abs(hashtext('u1')::bigint) % 64)::smallint, 'outbox_partition hashes into 64 partitions');
SELECT ok((SELECT bool_and(outbox_partition('user-' || i) BETWEEN 0 AND 63) FROM generate_series(1, 2000) i), 'every partition number is in 0..63');
SELECT is((SELECT count(DISTINCT outbox_partition('user-' || i))::int FROM generate_series(1, 2000) i), 64, 'user ids spread over all 64 partitions');

-- schema_migrations (created by profile-migrate)
SELECT columns_are('schema_migrations', ARRAY['version', 'name', 'checksum', 'applied_at', 'execution_ms']::name[]);
SELECT col_is_pk('schema_migrations', 'version');
SELECT ok((SELECT bool_and(checksum ~ '^[0-9a-f]{64}$') FROM schema_migrations), 'checksums are sha256 hex');
SELECT ok(schema_version() >= 3, 'schema_version() reports the applied version');

SELECT * FROM finish();
ROLLBACK;
