/*
 * Open-addressing hash table (linear probing, backward-shift deletion) from a string key to a
 * count above zero.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "common/alloc.h"
#include "relay/keycount.h"

typedef struct st_slot_t {
    char *user;
    int count;
} slot_t;

struct st_keycount_t {
    slot_t *slots;
    size_t cap; /* power of two */
    int used;
    int total;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; ++s) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

keycount_t *keycount_create(void)
{
    keycount_t *t = xcalloc(1, sizeof(*t));
    t->cap = 256;
    t->slots = xcalloc(t->cap, sizeof(slot_t));
    return t;
}

void keycount_destroy(keycount_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->cap; ++i)
        free(t->slots[i].user);
    free(t->slots);
    free(t);
}

static size_t find(const keycount_t *t, const char *user)
{
    size_t mask = t->cap - 1, i = (size_t)hash(user) & mask;
    while (t->slots[i].user != NULL && strcmp(t->slots[i].user, user) != 0)
        i = (i + 1) & mask;
    return i;
}

static void grow(keycount_t *t)
{
    slot_t *old = t->slots;
    size_t oldcap = t->cap;
    t->cap *= 2;
    t->slots = xcalloc(t->cap, sizeof(slot_t));
    for (size_t i = 0; i < oldcap; ++i) {
        if (old[i].user != NULL)
            t->slots[find(t, old[i].user)] = old[i];
    }
    free(old);
}

void keycount_inc(keycount_t *t, const char *user)
{
    if ((size_t)(t->used + 1) * 2 > t->cap)
        grow(t);
    size_t i = find(t, user);
    if (t->slots[i].user == NULL) {
        t->slots[i].user = xstrdup(user);
        t->slots[i].count = 0;
        t->used++;
    }
    t->slots[i].count++;
    t->total++;
}

int keycount_dec(keycount_t *t, const char *user)
{
    size_t mask = t->cap - 1, i = find(t, user);
    if (t->slots[i].user == NULL)
        return -1;
    t->total--;
    if (--t->slots[i].count > 0)
        return t->slots[i].count;
    free(t->slots[i].user);
    t->slots[i].user = NULL;
    t->used--;
    /* Backward-shift: move later members of the probe run into the hole. */
    size_t hole = i, j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (t->slots[j].user == NULL)
            break;
        size_t home = (size_t)hash(t->slots[j].user) & mask;
        /* Move j to hole when home is not cyclically within (hole, j]. */
        bool in_range = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!in_range) {
            t->slots[hole] = t->slots[j];
            t->slots[j].user = NULL;
            hole = j;
        }
    }
    return 0;
}

int keycount_count(const keycount_t *t, const char *user)
{
    size_t i = find(t, user);
    return t->slots[i].user != NULL ? t->slots[i].count : 0;
}

int keycount_keys(const keycount_t *t)
{
    return t->used;
}

int keycount_total(const keycount_t *t)
{
    return t->total;
}

int keycount_list(const keycount_t *t, const char **out, int max)
{
    int n = 0;
    for (size_t i = 0; i < t->cap && n < max; ++i) {
        if (t->slots[i].user != NULL)
            out[n++] = t->slots[i].user;
    }
    return n;
}
