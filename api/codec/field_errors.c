/*
 * Field errors (api/codec/field_errors.h), copied into the list's own storage so that a
 * message may be built on the stack.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "api/codec/field_errors.h"

void field_errors_init(field_errors_t *errs)
{
    errs->count = 0;
    errs->used = 0;
}

/* Copies at most `max` bytes of `s` into the storage, cut at a code point boundary. */
static const char *store(field_errors_t *errs, const char *s, size_t max)
{
    size_t len = strnlen(s, max + 1), room;
    char *dst;

    if (len > max) {
        len = max;
        while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
            --len;
    }
    room = sizeof(errs->storage) - errs->used;
    if (len + 1 > room)
        return NULL;
    dst = errs->storage + errs->used;
    memcpy(dst, s, len);
    dst[len] = '\0';
    errs->used += len + 1;
    return dst;
}

void field_errors_add(field_errors_t *errs, const char *field, const char *message)
{
    size_t used = errs->used;
    const char *f, *m;

    if (errs->count >= FIELD_ERRORS_MAX)
        return;
    if ((f = store(errs, field != NULL ? field : "", FIELD_ERRORS_NAME_MAX)) == NULL ||
        (m = store(errs, message, 256)) == NULL) {
        errs->used = used;
        return;
    }
    errs->items[errs->count].field = f;
    errs->items[errs->count].message = m;
    errs->count++;
}

void field_errors_addf(field_errors_t *errs, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    field_errors_add(errs, field, msg);
}
