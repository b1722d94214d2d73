/*
 * Allocation that never returns NULL: running out of memory aborts (as h2o_mem_alloc does),
 * so callers need no error path for it. Also the project-wide attribute macros.
 */
#ifndef PROFILE_COMMON_ALLOC_H
#define PROFILE_COMMON_ALLOC_H

#include <stddef.h>

#define PROFILE_MUSTCHECK __attribute__((warn_unused_result))

/** Logs "file:line: msg" and aborts: for broken invariants only. */
#define PROFILE_FATAL(msg) profile_fatal(__FILE__, __LINE__, (msg))

/** Aborts the process after writing a one-line message to stderr. Never returns. */
void profile_fatal(const char *file, int line, const char *msg) __attribute__((noreturn));

/** malloc that aborts on failure. Never returns NULL (a size of 0 allocates 1 byte). */
void *xmalloc(size_t sz);
/** calloc that aborts on failure. */
void *xcalloc(size_t n, size_t sz);
/** realloc that aborts on failure. */
void *xrealloc(void *p, size_t sz);
/** strdup that aborts on failure; NULL in gives NULL out. */
char *xstrdup(const char *s);
/** Copies `len` bytes and NUL-terminates. */
char *xstrndup(const char *s, size_t len);

#endif
