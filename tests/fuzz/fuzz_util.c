/*
 * fuzz_util: helpers shared by the fuzz targets. See fuzz_util.h.
 */
#include "fuzz_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

void fuzz_init_logging(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    enum log_level level = LOG_DEBUG;
    const char *name = getenv("FUZZ_LOG");
    if (name && log_parse_level(name, &level) != 0)
        level = LOG_DEBUG;
    log_set_level(level);
}

void fuzz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz target check failed: ", stdout);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    va_end(ap);
    abort();
}

char *fuzz_strndup(const uint8_t *data, size_t len)
{
    char *s = malloc(len + 1);
    if (!s)
        abort();
    if (len)
        memcpy(s, data, len);
    s[len] = '\0';
    return s;
}

bool fuzz_next_until(struct fuzz_reader *r, const char *sep, const uint8_t **piece, size_t *len)
{
    if (r->pos >= r->len)
        return false;
    size_t seplen = strlen(sep);
    const uint8_t *start = r->data + r->pos;
    size_t left = r->len - r->pos;
    const uint8_t *hit = seplen ? memmem(start, left, sep, seplen) : NULL;
    *piece = start;
    if (hit) {
        *len = (size_t)(hit - start);
        r->pos += *len + seplen;
    } else {
        *len = left;
        r->pos = r->len;
    }
    return true;
}

bool fuzz_next_line(struct fuzz_reader *r, const uint8_t **line, size_t *len)
{
    return fuzz_next_until(r, "\n", line, len);
}

const uint8_t *fuzz_rest(const struct fuzz_reader *r, size_t *len)
{
    *len = r->pos < r->len ? r->len - r->pos : 0;
    return r->data + (r->pos < r->len ? r->pos : r->len);
}
