-- profile-migrate: no-transaction
-- V008: history pages as index-only scans (docs/performance.md). api_page_history reads
-- (user_id, watched_at DESC, entry_id DESC) and then one heap page per row for video_id,
-- position_seconds and duration_seconds; this index carries them, so an uncached 50-item page
-- reads a few index pages instead of ~50 heap pages (once autovacuum has set the visibility map,
-- which it does for insert-mostly tables since PostgreSQL 13).
--
-- It replaces V001's history_entries_user_watched_idx (same keys). Built CONCURRENTLY so that
-- writes to history_entries go on during the build: profile-migrate runs this file outside a
-- transaction (first line), statement by statement. Safe to run again from the top after a
-- failure: an interrupted CONCURRENTLY build leaves an invalid index, dropped first.
DROP INDEX CONCURRENTLY IF EXISTS history_entries_user_watched_cover_idx;
CREATE INDEX CONCURRENTLY history_entries_user_watched_cover_idx
    ON history_entries (user_id, watched_at DESC, entry_id DESC)
    INCLUDE (video_id, position_seconds, duration_seconds);
DROP INDEX CONCURRENTLY IF EXISTS history_entries_user_watched_idx;
