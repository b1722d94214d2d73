-- V001: domain tables, the per-user event sequence, the transactional outbox, dead letters
-- and idempotency records. Every primary key starts with user_id (docs/schema.md).

CREATE TABLE profiles (
    user_id      text        NOT NULL,
    display_name text        NOT NULL,
    avatar_url   text,
    preferences  jsonb       NOT NULL DEFAULT '{}'::jsonb,
    version      bigint      NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT profiles_pkey PRIMARY KEY (user_id),
    CONSTRAINT profiles_user_id_format CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT profiles_display_name_length
        CHECK (char_length(display_name) BETWEEN 1 AND 100),
    -- C0 and C1 control characters (Unicode Cc), exactly what the API refuses; spelled out
    -- rather than [[:cntrl:]], whose meaning depends on the database's locale.
    CONSTRAINT profiles_display_name_no_controls
        CHECK (display_name !~ '[\u0001-\u001f\u007f-\u009f]'),
    -- URI schemes are case-insensitive (RFC 3986 section 3.1), as in the API's check.
    CONSTRAINT profiles_avatar_url_format
        CHECK (avatar_url IS NULL OR (avatar_url ~* '^https://' AND octet_length(avatar_url) <= 2048)),
    -- The API enforces the exact limit (8 KiB of compact JSON, 400 when over). jsonb's text form
    -- adds a space after every ':' and ',' (up to 1.5 times longer), so this backstop allows
    -- twice that: it must never refuse what the API accepted (that would be a 500).
    CONSTRAINT profiles_preferences_object
        CHECK (jsonb_typeof(preferences) = 'object' AND octet_length(preferences::text) <= 16384),
    CONSTRAINT profiles_version_positive CHECK (version >= 1)
);

CREATE TABLE watchlist_items (
    user_id  text        NOT NULL,
    video_id text        NOT NULL,
    added_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT watchlist_items_pkey PRIMARY KEY (user_id, video_id),
    CONSTRAINT watchlist_items_user_id_format CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT watchlist_items_video_id_format CHECK (video_id ~ '^[A-Za-z0-9._-]{1,64}$')
);
-- Keyset pagination, newest first: (added_at, video_id) DESC.
CREATE INDEX watchlist_items_user_added_idx
    ON watchlist_items (user_id, added_at DESC, video_id DESC);

CREATE TABLE history_entries (
    user_id          text        NOT NULL,
    entry_id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    video_id         text        NOT NULL,
    position_seconds integer     NOT NULL,
    duration_seconds integer,
    watched_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT history_entries_pkey PRIMARY KEY (user_id, entry_id),
    CONSTRAINT history_entries_user_id_format CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT history_entries_video_id_format CHECK (video_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT history_entries_position_range CHECK (position_seconds BETWEEN 0 AND 86400),
    CONSTRAINT history_entries_duration_range
        CHECK (duration_seconds IS NULL OR duration_seconds BETWEEN 0 AND 86400),
    CONSTRAINT history_entries_position_within_duration
        CHECK (duration_seconds IS NULL OR position_seconds <= duration_seconds)
);
-- Keyset pagination, newest first: (watched_at, entry_id) DESC.
CREATE INDEX history_entries_user_watched_idx
    ON history_entries (user_id, watched_at DESC, entry_id DESC);
-- view=continue: latest entry per video.
CREATE INDEX history_entries_user_video_watched_idx
    ON history_entries (user_id, video_id, watched_at DESC, entry_id DESC);

CREATE TABLE ratings (
    user_id    text        NOT NULL,
    video_id   text        NOT NULL,
    rating     smallint    NOT NULL,
    review     text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ratings_pkey PRIMARY KEY (user_id, video_id),
    CONSTRAINT ratings_user_id_format CHECK (user_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT ratings_video_id_format CHECK (video_id ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT ratings_rating_range CHECK (rating BETWEEN 1 AND 5),
    CONSTRAINT ratings_review_length CHECK (review IS NULL OR char_length(review) <= 2000)
);
-- Keyset pagination, newest first: (updated_at, video_id) DESC.
CREATE INDEX ratings_user_updated_idx ON ratings (user_id, updated_at DESC, video_id DESC);

-- One row per user: the last event sequence handed out. The row lock taken by the UPDATE that
-- bumps it serialises one user's writers, so sequence order is commit order for that user.
-- last_event_at keeps ce_time monotonic per user. The sequence doubles as the user's cache
-- version (any change bumps it).
CREATE TABLE user_event_seq (
    user_id       text        NOT NULL,
    last_seq      bigint      NOT NULL,
    last_event_at timestamptz NOT NULL,
    CONSTRAINT user_event_seq_pkey PRIMARY KEY (user_id),
    CONSTRAINT user_event_seq_positive CHECK (last_seq >= 1)
);

-- Relay partitions: user ids hash into a fixed number of partitions that relays lease with
-- advisory locks. 64 bounds how far relays scale out; changing it is a migration.
CREATE FUNCTION outbox_partition(p_user_id text) RETURNS smallint
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (abs(hashtext(p_user_id)::bigint) % 64)::smallint;

-- The transactional outbox. A row is pending while published_at IS NULL; the relay reads
-- pending rows per partition in (user_id, seq) order and marks them after Kafka's delivery
-- report. Published rows are deleted in bounded batches after OUTBOX_RETENTION_SECONDS.
CREATE TABLE outbox (
    user_id      text        NOT NULL,
    seq          bigint      NOT NULL,
    event_id     uuid        NOT NULL DEFAULT gen_random_uuid(),
    event_type   text        NOT NULL,
    partition_no smallint    NOT NULL GENERATED ALWAYS AS (outbox_partition(user_id)) STORED,
    payload      json        NOT NULL,
    traceparent  text,
    created_at   timestamptz NOT NULL,
    published_at timestamptz,
    CONSTRAINT outbox_pkey PRIMARY KEY (user_id, seq),
    CONSTRAINT outbox_event_id_key UNIQUE (event_id),
    CONSTRAINT outbox_seq_positive CHECK (seq >= 1),
    CONSTRAINT outbox_event_type_known CHECK (event_type IN
        ('WatchlistUpdated', 'HistoryUpdated', 'VideoRated', 'ProfileUpdated')),
    CONSTRAINT outbox_traceparent_format CHECK (traceparent IS NULL OR
        traceparent ~ '^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$')
) WITH (fillfactor = 90, autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_insert_scale_factor = 0.01);
-- What the relay scans: pending rows of its partitions, per user in sequence order.
CREATE INDEX outbox_pending_idx ON outbox (partition_no, user_id, seq)
    WHERE published_at IS NULL;
-- What retention cleanup scans.
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Events that can never be published. While a user has a row here the relay holds back that
-- user's later events (no consumer ever sees a gap) until an operator requeues or skips it.
CREATE TABLE outbox_dead_letters (
    user_id   text        NOT NULL,
    seq       bigint      NOT NULL,
    event_id  uuid        NOT NULL,
    error     text        NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT outbox_dead_letters_pkey PRIMARY KEY (user_id, seq),
    CONSTRAINT outbox_dead_letters_outbox_fkey FOREIGN KEY (user_id, seq)
        REFERENCES outbox (user_id, seq) ON DELETE CASCADE
);

-- Idempotency records, per (caller, key), stored in the write's own transaction.
CREATE TABLE idempotency_keys (
    caller        text        NOT NULL,
    idem_key      text        NOT NULL,
    request_hash  bytea       NOT NULL,
    status        smallint    NOT NULL,
    response_body text        NOT NULL,
    etag          text,
    location      text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (caller, idem_key),
    CONSTRAINT idempotency_keys_key_format CHECK (idem_key ~ '^[\x20-\x7e]{1,255}$'),
    CONSTRAINT idempotency_keys_status_range CHECK (status BETWEEN 200 AND 599),
    CONSTRAINT idempotency_keys_hash_length CHECK (octet_length(request_hash) = 32)
);
CREATE INDEX idempotency_keys_expires_idx ON idempotency_keys (expires_at);
