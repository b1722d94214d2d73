/*
 * A string-keyed counter table (key → count above zero). The relay keeps three: messages in
 * flight per user (a user with any is left out of claims, so one user's rows are only ever in
 * flight from one claim and a failed delivery is retried from that user's first pending row),
 * broker-reported permanent failures per event id, and the users dead-lettered in one report.
 */
#ifndef PROFILE_RELAY_KEYCOUNT_H
#define PROFILE_RELAY_KEYCOUNT_H

#include <stdbool.h>

typedef struct st_keycount_t keycount_t;

keycount_t *keycount_create(void);
/** NULL-safe. */
void keycount_destroy(keycount_t *t);
/** Adds one to `key` (copied on first use). */
void keycount_inc(keycount_t *t, const char *key);
/** Removes one; returns what is left for the key (the entry goes at 0). -1 if unknown. */
int keycount_dec(keycount_t *t, const char *key);
/** The count of `key` (0 when absent). */
int keycount_count(const keycount_t *t, const char *key);
/** Keys with a count above zero. */
int keycount_keys(const keycount_t *t);
/** Sum of all counts. */
int keycount_total(const keycount_t *t);
/**
 * Writes up to `max` keys (borrowed: valid until the next change) into `out`; returns how
 * many.
 */
int keycount_list(const keycount_t *t, const char **out, int max);

#endif
