/*
 * log: JSON lines on stderr. See log.h for the field format.
 */
#include "common/clock.h"
#include "common/log.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The one process-wide setting: written by main() before threads start, read everywhere. */
static atomic_int log_min_level = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *name, enum log_level *out)
{
    for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_level(enum log_level level)
{
    atomic_store(&log_min_level, (int)level);
}

bool log_enabled(enum log_level level)
{
    return (int)level >= atomic_load_explicit(&log_min_level, memory_order_relaxed);
}

/* Adds one `key=%conv` field, consuming its argument from `ap`. */
static void add_field(cJSON *obj, const char *key, const char *conv, va_list *ap)
{
    if (strcmp(conv, "s") == 0) {
        const char *s = va_arg(*ap, const char *);
        if (s)
            cJSON_AddStringToObject(obj, key, s);
        else
            cJSON_AddNullToObject(obj, key);
    } else if (strcmp(conv, "d") == 0) {
        cJSON_AddNumberToObject(obj, key, va_arg(*ap, int));
    } else if (strcmp(conv, "u") == 0) {
        cJSON_AddNumberToObject(obj, key, va_arg(*ap, unsigned));
    } else if (strcmp(conv, "ld") == 0) {
        cJSON_AddNumberToObject(obj, key, (double)va_arg(*ap, long));
    } else if (strcmp(conv, "lu") == 0) {
        cJSON_AddNumberToObject(obj, key, (double)va_arg(*ap, unsigned long));
    } else if (strcmp(conv, "lld") == 0) {
        cJSON_AddNumberToObject(obj, key, (double)va_arg(*ap, long long));
    } else if (strcmp(conv, "llu") == 0) {
        cJSON_AddNumberToObject(obj, key, (double)va_arg(*ap, unsigned long long));
    } else if (strcmp(conv, "zu") == 0) {
        cJSON_AddNumberToObject(obj, key, (double)va_arg(*ap, size_t));
    } else if (strcmp(conv, "f") == 0) {
        cJSON_AddNumberToObject(obj, key, va_arg(*ap, double));
    } else if (strcmp(conv, "b") == 0) {
        cJSON_AddBoolToObject(obj, key, va_arg(*ap, int));
    } else {
        /* A programming error in a format string: say so in the line instead of guessing. */
        cJSON_AddStringToObject(obj, key, "<bad log conversion>");
    }
}

static void add_timestamp(cJSON *obj)
{
    uint64_t ns = clock_wall_ns();
    char buf[CLOCK_RFC3339_MAX];
    clock_rfc3339_format(buf, sizeof(buf), (int64_t)(ns / 1000000000), (long)(ns % 1000000000), 3);
    cJSON_AddStringToObject(obj, "ts", buf);
}

void log_write(enum log_level level, const char *msg, const char *fields, ...)
{
    if (!log_enabled(level))
        return;
    cJSON *obj = cJSON_CreateObject();
    if (!obj)
        return;
    add_timestamp(obj);
    cJSON_AddStringToObject(obj, "level", level_names[level]);
    cJSON_AddStringToObject(obj, "msg", msg);

    va_list ap;
    va_start(ap, fields);
    const char *p = fields ? fields : "";
    while (*p) {
        while (*p == ' ')
            p++;
        const char *eq = strchr(p, '=');
        if (!*p || !eq || eq[1] != '%')
            break;
        char key[64], conv[8];
        size_t klen = (size_t)(eq - p);
        if (klen >= sizeof(key))
            klen = sizeof(key) - 1;
        memcpy(key, p, klen);
        key[klen] = '\0';
        const char *c = eq + 2;
        size_t clen = strcspn(c, " ");
        if (clen >= sizeof(conv))
            clen = sizeof(conv) - 1;
        memcpy(conv, c, clen);
        conv[clen] = '\0';
        add_field(obj, key, conv, &ap);
        p = c + strcspn(c, " ");
    }
    va_end(ap);

    char *line = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!line)
        return;
    size_t len = strlen(line);
    line[len] = '\n'; /* replaces the NUL: the buffer is only written, never used as a string */
    ssize_t w = write(STDERR_FILENO, line, len + 1);
    (void)w; /* nowhere to report a failed log write */
    free(line);
}
