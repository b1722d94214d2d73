/* Growable text buffer with optional caller-provided initial storage (see buf.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/alloc.h"
#include "common/buf.h"

void strbuf_init(strbuf_t *b)
{
    b->cap = 64;
    b->data = xmalloc(b->cap);
    b->data[0] = '\0';
    b->len = 0;
    b->on_heap = 1;
}

void strbuf_init_fixed(strbuf_t *b, char *mem, size_t cap)
{
    b->data = mem;
    b->cap = cap;
    b->len = 0;
    b->on_heap = 0;
    b->data[0] = '\0';
}

void strbuf_dispose(strbuf_t *b)
{
    if (b == NULL)
        return;
    if (b->on_heap)
        free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    b->on_heap = 0;
}

void strbuf_reset(strbuf_t *b)
{
    b->len = 0;
    b->data[0] = '\0';
}

void strbuf_reserve(strbuf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1, cap;
    if (need <= b->cap)
        return;
    cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need)
        cap *= 2;
    if (b->on_heap) {
        b->data = xrealloc(b->data, cap);
    } else {
        char *p = xmalloc(cap);
        memcpy(p, b->data, b->len + 1);
        b->data = p;
        b->on_heap = 1;
    }
    b->cap = cap;
}

void strbuf_append(strbuf_t *b, const char *s, size_t len)
{
    strbuf_reserve(b, len);
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void strbuf_append_str(strbuf_t *b, const char *s)
{
    strbuf_append(b, s, strlen(s));
}

void strbuf_append_char(strbuf_t *b, char c)
{
    strbuf_append(b, &c, 1);
}

void strbuf_append_i64(strbuf_t *b, int64_t v)
{
    char tmp[24], *p = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    strbuf_append(b, p, (size_t)(tmp + sizeof(tmp) - p));
}

void strbuf_vappendf(strbuf_t *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return;
    if ((size_t)n >= b->cap - b->len) {
        strbuf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    }
    b->len += (size_t)n;
}

void strbuf_appendf(strbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    strbuf_vappendf(b, fmt, ap);
    va_end(ap);
}

void strbuf_append_json_string(strbuf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;

    strbuf_reserve(b, len + 2);
    strbuf_append_char(b, '"');
    for (i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[6];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        strbuf_append(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        default:
            u[0] = '\\';
            u[1] = 'u';
            u[2] = '0';
            u[3] = '0';
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
            strbuf_append(b, u, 6);
            continue;
        }
        strbuf_append_str(b, esc);
    }
    strbuf_append(b, s + run, len - run);
    strbuf_append_char(b, '"');
}

char *strbuf_steal(strbuf_t *b, size_t *len)
{
    char *p;
    if (b->on_heap) {
        p = b->data;
    } else {
        p = xstrndup(b->data, b->len);
    }
    if (len != NULL)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    b->on_heap = 0;
    return p;
}
