/* mem.h: allocation wrappers that abort on exhaustion, and bounded string
 * building. Every allocation in ember goes through these, so no caller checks
 * for NULL from malloc and no caller formats into a fixed buffer unchecked. */
#ifndef EMBER_COMMON_MEM_H
#define EMBER_COMMON_MEM_H

#include <stdarg.h>
#include <stddef.h>

void *cmn_malloc(size_t n);
void *cmn_calloc(size_t nmemb, size_t size);
void *cmn_realloc(void *p, size_t n);
char *cmn_strdup(const char *s); /* NULL in, NULL out */
char *cmn_strndup(const char *s, size_t n);
/* Allocating printf; aborts on exhaustion, never returns NULL. */
char *cmn_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *cmn_vasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));
/* snprintf that reports truncation: returns 0 when it fits, -1 when not. */
int cmn_snprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
