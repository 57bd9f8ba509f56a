/*
 * pathprobe_nonce: see pathprobe_nonce.h.
 */
#include "common/pathprobe_nonce.h"

#include <errno.h>
#include <stdint.h>
#include <sys/random.h>

bool pathprobe_nonce_valid(const char *s, size_t len)
{
    if (len == 0 || len > PATHPROBE_NONCE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

int pathprobe_nonce_new(char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[PATHPROBE_NONCE_NEW_LEN / 2];
    if (outlen > 0)
        out[0] = '\0';
    if (outlen < PATHPROBE_NONCE_NEW_LEN + 1) {
        errno = EINVAL;
        return -1;
    }
    size_t got = 0;
    while (got < sizeof(raw)) {
        /* Blocks only until the kernel's pool is first initialised, early at boot. */
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[PATHPROBE_NONCE_NEW_LEN] = '\0';
    return 0;
}
