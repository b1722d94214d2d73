/* Aborting allocation wrappers (see alloc.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "common/alloc.h"

void profile_fatal(const char *file, int line, const char *msg)
{
    fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"%s:%d: %s\"}\n", file, line, msg);
    abort();
}

void *xmalloc(size_t sz)
{
    void *p = malloc(sz == 0 ? 1 : sz);
    if (p == NULL)
        PROFILE_FATAL("out of memory");
    return p;
}

void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n == 0 ? 1 : n, sz == 0 ? 1 : sz);
    if (p == NULL)
        PROFILE_FATAL("out of memory");
    return p;
}

void *xrealloc(void *p, size_t sz)
{
    void *q = realloc(p, sz == 0 ? 1 : sz);
    if (q == NULL)
        PROFILE_FATAL("out of memory");
    return q;
}

char *xstrdup(const char *s)
{
    return s == NULL ? NULL : xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t len)
{
    char *p = xmalloc(len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}
