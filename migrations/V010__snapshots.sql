-- V010: snapshots for new consumers (docs/events.md, Snapshots). `profile-relay snapshot` writes
-- each user's current state as ordinary events through the outbox, under the user's lock, one
-- user per transaction; the outbox row names its snapshot so the relay adds the `ce_snapshot`
-- header. Progress lives in `snapshots` and moves in the same transaction as the user's events,
-- so a snapshot resumed after a crash goes on after the last user done and never emits a
-- finished user twice.

-- NULL for live writes; the snapshot's id for the events a snapshot wrote.
ALTER TABLE outbox ADD COLUMN snapshot_id uuid;

-- One row per snapshot. Users are taken in user_id order from user_event_seq (every write
-- that changes a user's state emits an event, so every user with state has a row there);
-- last_user_id is the last one done. A --user snapshot has only_user set.
CREATE TABLE snapshots (
    snapshot_id   uuid        NOT NULL DEFAULT gen_random_uuid(),
    only_user     text,
    users_total   bigint      NOT NULL,
    users_done    bigint      NOT NULL DEFAULT 0,
    events_total  bigint      NOT NULL DEFAULT 0,
    last_user_id  text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    CONSTRAINT snapshots_pkey PRIMARY KEY (snapshot_id),
    CONSTRAINT snapshots_only_user_format
        CHECK (only_user IS NULL OR only_user ~ '^[A-Za-z0-9._-]{1,64}$'),
    CONSTRAINT snapshots_counts CHECK (users_total >= 0 AND users_done >= 0 AND events_total >= 0)
);

-- Starts a snapshot of every user (p_only_user NULL) or of one user; returns its id. The total
-- is the number of users known now; users that appear later are taken too (they sort after
-- or before the cursor: those before it were created after the snapshot started and their
-- events since their first one reach consumers live).
CREATE FUNCTION snapshot_start(p_only_user text) RETURNS uuid
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_id uuid;
BEGIN
    INSERT INTO snapshots (only_user, users_total)
    VALUES (p_only_user,
            CASE WHEN p_only_user IS NULL THEN (SELECT count(*) FROM user_event_seq) ELSE 1 END)
    RETURNING snapshot_id INTO v_id;
    RETURN v_id;
END;
$$;

-- Writes the next user's state and records it done, in one transaction (one statement in
-- autocommit). Returns one row (user_id, events) for the user done (events may be 0: a user
-- with no state left), or no row when the snapshot is finished (finished_at is then set).
-- The snapshot's row is locked first, so two runners of one snapshot take turns instead of
-- emitting a user twice. Lock order after that is the writers' (api_lock_user, then the
-- user_event_seq row), so a snapshot and the user's writers never deadlock.
--
-- The events are inserted in one statement with one sequence bump of n (a write bumps by one
-- through api_emit_event; a user's state can be a thousand watchlist items): ProfileUpdated,
-- then watchlist items (oldest first), ratings, resume points. Payloads are built exactly as
-- V002/V003 build them for live writes.
CREATE FUNCTION snapshot_step(p_snapshot_id uuid)
    RETURNS TABLE (user_id text, events integer)
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER
    SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    s snapshots%ROWTYPE;
    v_user text;
    v_n integer;
    v_base bigint;
    v_at timestamptz;
    v_types text[];
    v_payloads text[];
BEGIN
    SELECT * INTO s FROM snapshots x WHERE x.snapshot_id = p_snapshot_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no snapshot %', p_snapshot_id USING ERRCODE = 'no_data_found';
    END IF;
    IF s.finished_at IS NOT NULL THEN
        RETURN;
    END IF;
    IF s.only_user IS NOT NULL THEN
        v_user := CASE WHEN s.last_user_id IS NULL THEN s.only_user END;
    ELSIF s.last_user_id IS NULL THEN
        SELECT q.user_id INTO v_user FROM user_event_seq q ORDER BY q.user_id LIMIT 1;
    ELSE
        -- Its own statement, so the plan is always an index range scan from the cursor (an
        -- "IS NULL OR >" condition may get a generic plan that scans from the first user).
        SELECT q.user_id INTO v_user FROM user_event_seq q
         WHERE q.user_id > s.last_user_id ORDER BY q.user_id LIMIT 1;
    END IF;
    IF v_user IS NULL THEN
        UPDATE snapshots x SET finished_at = now(), updated_at = now()
         WHERE x.snapshot_id = p_snapshot_id;
        RETURN;
    END IF;

    PERFORM api_lock_user(v_user);
    SELECT array_agg(e.event_type ORDER BY e.grp, e.k1, e.k2),
           array_agg(e.payload ORDER BY e.grp, e.k1, e.k2)
      INTO v_types, v_payloads
      FROM (SELECT 1 AS grp, p.updated_at AS k1, ''::text AS k2, 'ProfileUpdated' AS event_type,
                   '{"userId":' || api_jstr(p.user_id) || ',"version":' || p.version::text ||
                   '}' AS payload
              FROM profiles p WHERE p.user_id = v_user
            UNION ALL
            SELECT 2, w.added_at, w.video_id, 'WatchlistUpdated',
                   '{"userId":' || api_jstr(w.user_id) || ',"videoId":' || api_jstr(w.video_id) ||
                   ',"action":"added"}'
              FROM watchlist_items w WHERE w.user_id = v_user
            UNION ALL
            SELECT 3, r.updated_at, r.video_id, 'VideoRated',
                   '{"userId":' || api_jstr(r.user_id) || ',"videoId":' || api_jstr(r.video_id) ||
                   ',"rating":' || r.rating::text || ',"review":' || api_jstr(r.review) || '}'
              FROM ratings r WHERE r.user_id = v_user
            UNION ALL
            SELECT 4, h.watched_at, h.video_id, 'HistoryUpdated',
                   '{"userId":' || api_jstr(h.user_id) || ',"videoId":' || api_jstr(h.video_id) ||
                   ',"positionSeconds":' || h.position_seconds::text || ',"durationSeconds":' ||
                   coalesce(h.duration_seconds::text, 'null') || ',"watchedAt":"' ||
                   api_ts(h.watched_at) || '"}'
              FROM resume_points h WHERE h.user_id = v_user) e;
    v_n := coalesce(cardinality(v_types), 0);

    IF v_n > 0 THEN
        UPDATE user_event_seq q
           SET last_seq = q.last_seq + v_n, last_event_at = greatest(now(), q.last_event_at)
         WHERE q.user_id = v_user
        RETURNING q.last_seq - v_n, q.last_event_at INTO v_base, v_at;
        IF NOT FOUND THEN
            -- State without a sequence row (rows loaded around the API): start the sequence.
            INSERT INTO user_event_seq (user_id, last_seq, last_event_at)
            VALUES (v_user, v_n, now())
            RETURNING 0, last_event_at INTO v_base, v_at;
        END IF;
        INSERT INTO outbox (user_id, seq, event_type, payload, traceparent, created_at,
                            snapshot_id)
        SELECT v_user, v_base + r.ord, r.event_type, r.payload::json, NULL, v_at, p_snapshot_id
          FROM unnest(v_types, v_payloads) WITH ORDINALITY AS r(event_type, payload, ord);
        PERFORM pg_notify('outbox_new', outbox_partition(v_user)::text);
    END IF;

    UPDATE snapshots x
       SET last_user_id = v_user, users_done = x.users_done + 1,
           events_total = x.events_total + v_n, updated_at = now()
     WHERE x.snapshot_id = p_snapshot_id;
    RETURN QUERY SELECT v_user, v_n;
END;
$$;

-- Who may run a snapshot (V004's convention): the relay role. Both functions run as the owner
-- (SECURITY DEFINER, fixed search_path), so the relay role needs no write privilege on the
-- domain tables or the outbox; it reads the progress table for the progress line.
GRANT EXECUTE ON FUNCTION snapshot_start(text), snapshot_step(uuid) TO profile_relay;
GRANT SELECT ON snapshots TO profile_relay;
