/*
 * Users with messages in flight: a string-keyed counter table. A user with a count above zero
 * is left out of claims, so one user's rows are only ever in flight from one claim at a time
 * and a failed delivery is retried from that user's first pending row, in order.
 */
#ifndef PROFILE_RELAY_INFLIGHT_H
#define PROFILE_RELAY_INFLIGHT_H

#include <stdbool.h>

typedef struct st_inflight_t inflight_t;

inflight_t *inflight_create(void);
/** NULL-safe. */
void inflight_destroy(inflight_t *t);
/** Adds one message for `user` (copied on first use). */
void inflight_inc(inflight_t *t, const char *user);
/** Removes one; returns what is left for the user (the entry goes at 0). -1 if unknown. */
int inflight_dec(inflight_t *t, const char *user);
/** Messages in flight for `user`. */
int inflight_count(const inflight_t *t, const char *user);
/** Users with at least one message in flight. */
int inflight_users(const inflight_t *t);
/** Messages in flight in total. */
int inflight_total(const inflight_t *t);
/**
 * Writes up to `max` user ids (borrowed: valid until the next change) into `out`; returns how
 * many.
 */
int inflight_list(const inflight_t *t, const char **out, int max);

#endif
