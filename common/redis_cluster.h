/*
 * Redis Cluster arithmetic shared by the API's asynchronous client and the relay's blocking
 * one: key → slot (CRC16 of the hash tag), MOVED/ASK redirections, the CLUSTER SLOTS reply and
 * the grouping of a batch of keys by slot. Pure functions; no I/O, any thread.
 */
#ifndef PROFILE_COMMON_REDIS_CLUSTER_H
#define PROFILE_COMMON_REDIS_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <hiredis/hiredis.h>

#define REDIS_CLUSTER_SLOTS 16384

/** Longest host name a redirection or a slot map entry may carry (longer ones are refused). */
#define REDIS_CLUSTER_HOST_MAX 256

/** CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), as in the cluster spec. */
uint16_t redis_cluster_crc16(const char *buf, size_t len);

/**
 * The slot of `key` (`len` bytes): CRC16 of the hash tag — the bytes between the first '{'
 * and the next '}' when that is not empty — or of the whole key, modulo 16384.
 */
unsigned redis_cluster_key_slot(const char *key, size_t len);

typedef enum {
    REDIS_CLUSTER_NO_REDIRECT = 0,
    REDIS_CLUSTER_MOVED, /* the slot lives elsewhere for good: update the map */
    REDIS_CLUSTER_ASK,   /* being migrated: send ASKING then the command to that node, once */
} redis_cluster_redirect_kind_t;

typedef struct st_redis_cluster_redirect_t {
    redis_cluster_redirect_kind_t kind;
    unsigned slot;
    char host[REDIS_CLUSTER_HOST_MAX];
    int port;
} redis_cluster_redirect_t;

/**
 * Parses an error reply's text ("MOVED 3999 127.0.0.1:6381", "ASK 3999 [::1]:6381"). Returns
 * the kind (NO_REDIRECT for any other error or a malformed redirection) and fills `out`.
 */
redis_cluster_redirect_kind_t redis_cluster_parse_redirect(const char *err, size_t len,
                                                           redis_cluster_redirect_t *out);

/** One range of a slot map: slots [start, end] served by master host:port. */
typedef struct st_redis_cluster_range_t {
    unsigned start, end;
    char host[REDIS_CLUSTER_HOST_MAX];
    int port;
} redis_cluster_range_t;

/**
 * Parses a CLUSTER SLOTS reply into at most `max` ranges of `out` (the masters only). An empty
 * host (a node that does not know its own address) is replaced by `default_host`. Returns the
 * number of ranges, or -1 when the reply is malformed or has more than `max` ranges.
 */
int redis_cluster_parse_slots(const redisReply *r, const char *default_host,
                              redis_cluster_range_t *out, size_t max);

/**
 * Orders the indices 0..n-1 of a batch by slot, keeping arrival order within a slot, into
 * `order` (n entries). Consecutive entries with equal `slots[order[i]]` form one group: a
 * multi-key command may carry one group and never more. `slots` has n entries. Returns the
 * number of groups.
 */
size_t redis_cluster_group_by_slot(const uint16_t *slots, size_t n, size_t *order);

/**
 * The first word of an error reply ("MOVED", "CROSSSLOT", "ERR"...), at most `outlen` - 1
 * bytes, for counting and logging by kind.
 */
void redis_cluster_error_kind(const char *err, size_t len, char *out, size_t outlen);

#endif
