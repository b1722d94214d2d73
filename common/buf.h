/*
 * Growable byte buffer for building text (JSON, log lines, SQL parameters). It may start on
 * caller-provided storage (e.g. a stack array) and moves to the heap only when that is full.
 */
#ifndef PROFILE_COMMON_BUF_H
#define PROFILE_COMMON_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

typedef struct st_strbuf_t {
    char *data;  /* always NUL-terminated */
    size_t len;  /* bytes used, without the NUL */
    size_t cap;  /* bytes available, including room for the NUL */
    int on_heap; /* data is owned (malloc'ed) */
} strbuf_t;

/** Starts an empty heap buffer. Release with strbuf_dispose(). */
void strbuf_init(strbuf_t *b);
/** Starts on caller storage `mem` of `cap` bytes (cap >= 1); grows to the heap when needed. */
void strbuf_init_fixed(strbuf_t *b, char *mem, size_t cap);
/** Frees heap storage, if any. NULL-safe; the buffer may be re-initialised afterwards. */
void strbuf_dispose(strbuf_t *b);
/** Empties the buffer, keeping its storage. */
void strbuf_reset(strbuf_t *b);
/** Makes room for `extra` more bytes. Aborts when memory runs out. */
void strbuf_reserve(strbuf_t *b, size_t extra);
void strbuf_append(strbuf_t *b, const char *s, size_t len);
void strbuf_append_str(strbuf_t *b, const char *s);
void strbuf_append_char(strbuf_t *b, char c);
/** Appends `v` in decimal (as "%lld" would, without the formatting machinery). */
void strbuf_append_i64(strbuf_t *b, int64_t v);
void strbuf_appendf(strbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void strbuf_vappendf(strbuf_t *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/**
 * Appends `s` as a quoted JSON string escaped exactly like PostgreSQL's to_json(text), so a
 * body rendered here and one rendered in SQL are byte-identical: \" \\ \b \f \n \r \t,
 * the other bytes below 0x20 as \u00xx, everything else (DEL, bytes >= 0x80) as it is
 * (callers pass valid UTF-8).
 */
void strbuf_append_json_string(strbuf_t *b, const char *s, size_t len);
/**
 * Transfers the contents to a malloc'ed NUL-terminated string owned by the caller, leaving the
 * buffer empty (and disposed).
 */
char *strbuf_steal(strbuf_t *b, size_t *len);

#endif
