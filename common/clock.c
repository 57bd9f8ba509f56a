/*
 * clock: clock_gettime, and RFC 3339 with gmtime_r/strftime and strptime/timegm.
 */
#include "common/clock.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static struct timespec now(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts;
}

uint64_t clock_mono_ns(void)
{
    struct timespec ts = now(CLOCK_MONOTONIC);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t clock_mono_ms(void)
{
    struct timespec ts = now(CLOCK_MONOTONIC);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int64_t clock_wall_s(void)
{
    return (int64_t)now(CLOCK_REALTIME).tv_sec;
}

uint64_t clock_wall_ns(void)
{
    struct timespec ts = now(CLOCK_REALTIME);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int clock_rfc3339_format(char *buf, size_t len, int64_t unix_s, long nsec, int digits)
{
    if (len == 0)
        return -1;
    buf[0] = '\0';
    long divisor;
    switch (digits) {
    case 0:
    case 9:
        divisor = 1;
        break;
    case 3:
        divisor = 1000000;
        break;
    case 6:
        divisor = 1000;
        break;
    default:
        return -1;
    }
    struct tm tm;
    time_t s = (time_t)unix_s;
    char day[24];
    if (!gmtime_r(&s, &tm) || strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return -1;
    int n = digits ? snprintf(buf, len, "%s.%0*ldZ", day, digits, nsec / divisor)
                   : snprintf(buf, len, "%sZ", day);
    if (n < 0 || (size_t)n >= len) {
        buf[0] = '\0';
        return -1;
    }
    return 0;
}

int clock_rfc3339_parse(const char *s, int64_t *unix_s)
{
    struct tm tm = {0};
    const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!p)
        return -1;
    if (*p == '.')
        for (p++; isdigit((unsigned char)*p); p++)
            ;
    int64_t offset = 0;
    if ((p[0] == '+' || p[0] == '-') && isdigit((unsigned char)p[1]) &&
        isdigit((unsigned char)p[2]) && p[3] == ':' && isdigit((unsigned char)p[4]) &&
        isdigit((unsigned char)p[5])) {
        offset =
            ((p[1] - '0') * 10 + (p[2] - '0')) * 3600 + ((p[4] - '0') * 10 + (p[5] - '0')) * 60;
        if (p[0] == '-')
            offset = -offset;
    }
    *unix_s = (int64_t)timegm(&tm) - offset;
    return 0;
}
