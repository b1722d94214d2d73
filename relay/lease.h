/*
 * Partition leases: the relay holds outbox partitions with session advisory locks on a
 * dedicated PostgreSQL connection, and shares them fairly with the other live relays (each
 * aims at ceil(64 / relays)). A relay that dies loses its locks with its connection; one whose
 * lease connection runs no statement for the takeover time has its backend ended by a peer.
 */
#ifndef PROFILE_RELAY_LEASE_H
#define PROFILE_RELAY_LEASE_H

#include <stdbool.h>
#include <stdint.h>
#include "relay/outbox.h"

typedef struct st_lease_t lease_t;

/** application_name of lease connections; live relays are counted by it. */
#define LEASE_APPLICATION_NAME "profile-relay"

/**
 * Creates an unconnected lease manager for `dsn` (copied). A peer relay whose lease connection
 * has been silent for `takeover_s` seconds is taken over (see lease_tick()).
 */
lease_t *lease_create(const char *dsn, int takeover_s);

/** Closes the connection (releasing every lock). NULL-safe. */
void lease_destroy(lease_t *l);

/**
 * Connects when needed (with backoff); ends the lease backend of every peer relay whose lease
 * connection has run no statement for the takeover time (pg_terminate_backend: that frees its
 * locks); counts live relays, releases partitions over the fair share once they have nothing in
 * flight (`inflight[p]` rows), and takes free ones up to it. Must run about every second: the
 * statements it runs are this relay's heartbeat. Returns 0, or -1 when the connection is down
 * (then nothing is held).
 */
int lease_tick(lease_t *l, const int inflight[OUTBOX_PARTITIONS]);

/**
 * Writes the partitions that may be claimed (held and not being released) into `out`, starting
 * at a rotating offset so that every partition gets its turn first. Returns how many.
 */
int lease_claimable(lease_t *l, int out[OUTBOX_PARTITIONS]);

/** Bit p set when partition p may be claimed (held and not being released). */
uint64_t lease_claimable_mask(const lease_t *l);

/** Number of partitions held (including ones being released). */
int lease_held_count(const lease_t *l);

/**
 * True after the lease connection was dropped because its server reported itself read-only (a
 * failover), until a new lease connection is up. The relay's other connections, idle ones
 * included, are on the same server and must be dropped too: an idle session never hears of it.
 */
bool lease_server_read_only(const lease_t *l);

/** Backend pid of the lease connection (0 when disconnected). */
int lease_backend_pid(const lease_t *l);

/** Peer relays whose lease backend this one ended, since creation. */
unsigned long long lease_peers_ended(const lease_t *l);

/** Fair share of partitions for `relays` live relays: ceil(64 / relays), at least 1 relay. */
int lease_fair_share(int relays);

#endif
