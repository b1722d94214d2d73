/*
 * The SQL contract of the prepared statements (api/data/pgpool.c, docs/sql-api.md) by name:
 * the position of each parameter and each result column. Positions are 0-based indexes into
 * the `values` array and PQgetvalue()'s column argument.
 */
#ifndef PROFILE_API_DATA_SQL_H
#define PROFILE_API_DATA_SQL_H

/** The five parameters every write function takes first (api_write_submit fills them). */
enum {
    SQL_WRITE_CALLER = 0,   /* p_caller: the token's subject */
    SQL_WRITE_IDEM_KEY,     /* p_idem_key: Idempotency-Key, NULL when absent */
    SQL_WRITE_REQUEST_HASH, /* p_request_hash: hex SHA-256 of the request, NULL without a key */
    SQL_WRITE_IDEM_TTL,     /* p_idem_ttl_seconds */
    SQL_WRITE_TRACEPARENT,  /* p_traceparent: our server span, stored with the event */
    SQL_WRITE__COMMON       /* the first parameter of the resource's own */
};

/** api_put_profile(common..., p_user_id, p_display_name, p_avatar_url, p_preferences, p_if_match)
 */
enum {
    SQL_PUT_PROFILE_USER = SQL_WRITE__COMMON,
    SQL_PUT_PROFILE_DISPLAY_NAME,
    SQL_PUT_PROFILE_AVATAR_URL,
    SQL_PUT_PROFILE_PREFERENCES,
    SQL_PUT_PROFILE_IF_MATCH,
    SQL_PUT_PROFILE__COUNT
};

/** api_watchlist_add / api_watchlist_remove(common..., p_user_id, p_video_id) */
enum { SQL_WATCHLIST_USER = SQL_WRITE__COMMON, SQL_WATCHLIST_VIDEO, SQL_WATCHLIST__COUNT };

/** api_history_add(common..., p_user_id, p_video_id, p_position, p_duration, p_watched_at) */
enum {
    SQL_HISTORY_ADD_USER = SQL_WRITE__COMMON,
    SQL_HISTORY_ADD_VIDEO,
    SQL_HISTORY_ADD_POSITION,
    SQL_HISTORY_ADD_DURATION,
    SQL_HISTORY_ADD_WATCHED_AT,
    SQL_HISTORY_ADD__COUNT
};

/** api_rating_put(common..., p_user_id, p_video_id, p_rating, p_review) */
enum {
    SQL_RATING_PUT_USER = SQL_WRITE__COMMON,
    SQL_RATING_PUT_VIDEO,
    SQL_RATING_PUT_RATING,
    SQL_RATING_PUT_REVIEW,
    SQL_RATING_PUT__COUNT
};

/** api_erase_profile(common..., p_user_id) (V011) */
enum { SQL_ERASE_PROFILE_USER = SQL_WRITE__COMMON, SQL_ERASE_PROFILE__COUNT };

/**
 * The row every write statement returns: the function's (status, body, etag, location, replayed,
 * seq), then the user's relay partition (outbox_partition) for the hint sent after commit.
 */
enum {
    SQL_WRITE_COL_STATUS = 0,
    SQL_WRITE_COL_BODY,
    SQL_WRITE_COL_ETAG,
    SQL_WRITE_COL_LOCATION,
    SQL_WRITE_COL_REPLAYED,  /* 't' when the Idempotency-Key replayed a stored answer */
    SQL_WRITE_COL_SEQ,       /* the event sequence the write produced, NULL when none */
    SQL_WRITE_COL_PARTITION, /* outbox_partition(user): where that event waits for the relay */
    SQL_WRITE__COLS
};

/** api_get_profile(p_user_id) returns (status, body, etag). */
enum { SQL_GET_PROFILE_USER = 0, SQL_GET_PROFILE__COUNT };
enum {
    SQL_GET_PROFILE_COL_STATUS = 0,
    SQL_GET_PROFILE_COL_BODY,
    SQL_GET_PROFILE_COL_ETAG,
    SQL_GET_PROFILE__COLS
};

/** api_page_*(p_user_id, p_limit | p_video_id, after ts in µs, after id): see listrender.h. */
enum {
    SQL_PAGE_USER = 0,
    SQL_PAGE_LIMIT, /* the videoId for PGPOOL_STMT_PAGE_RATING_VIDEO (one row at most) */
    SQL_PAGE_AFTER_TS,
    SQL_PAGE_AFTER_ID,
    SQL_PAGE__COUNT
};

/**
 * The rows of the api_page_* statements (binary format, api/data/listrender.c): the user's
 * version first, then the item's columns. An empty page is one row with the item columns NULL.
 */
enum { SQL_PAGE_COL_VERSION = 0 };
enum { SQL_WATCH_COL_VIDEO = 1, SQL_WATCH_COL_ADDED_AT, SQL_WATCH__COLS };
enum {
    SQL_HISTORY_COL_ENTRY_ID = 1,
    SQL_HISTORY_COL_VIDEO,
    SQL_HISTORY_COL_POSITION,
    SQL_HISTORY_COL_DURATION,
    SQL_HISTORY_COL_WATCHED_AT,
    SQL_HISTORY__COLS
};
enum {
    SQL_RATING_COL_VIDEO = 1,
    SQL_RATING_COL_RATING,
    SQL_RATING_COL_REVIEW,
    SQL_RATING_COL_CREATED_AT,
    SQL_RATING_COL_UPDATED_AT,
    SQL_RATING__COLS
};

#endif
