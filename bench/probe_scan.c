/*
 * bench/probe_scan.c: what the data-path probe check costs a relayed connection: nanoseconds
 * per call of resolver/conn.c's datapath_probe_in (static, so this file includes conn.c) on
 * typical first reads, and on the worst one. It runs once per connection relayed unparsed on
 * an HTTP port. Build against a release build's static libraries, run pinned:
 *
 *   B=/tmp/hf-bench/build   # meson setup $B -Dtests=false --buildtype=release -Db_ndebug=true
 *   gcc -O2 -std=gnu11 -D_GNU_SOURCE -DHOLDFAST_VERSION='"bench"' -I. \
 *       -I/usr/share/include/llhttp bench/probe_scan.c $B/libholdfast_core.a $B/libllhttp.a \
 *       -levent_core -levent_pthreads -levent_extra -lcurl -lcjson -lpcre2-8 -lyaml -lpthread \
 *       -o /tmp/probe_scan && taskset -c 1 /tmp/probe_scan
 */
#include "resolver/conn.c"
#include <stdio.h>

static double elapsed_ns(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e9 + (double)(b->tv_nsec - a->tv_nsec);
}

/* Calls the check on p[0, n) for about 200 ms, in batches of 256; prints ns per call. */
static void bench(const char *name, const char *p, size_t n)
{
    volatile unsigned sink = 0;
    struct timespec a, b;
    long calls = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do {
        for (int i = 0; i < 256; i++) {
            __asm__ volatile("" : : "r"(p) : "memory"); /* the compiler cannot hoist the call */
            sink += datapath_probe_in(p, n);
        }
        calls += 256;
        clock_gettime(CLOCK_MONOTONIC, &b);
    } while (elapsed_ns(&a, &b) < 2e8);
    printf("%-40s %6zu bytes  %8.1f ns/call  (probe: %s)\n", name, n, elapsed_ns(&a, &b) / calls,
           sink ? "yes" : "no");
}

int main(void)
{
    static const char wrk[] =
        "GET / HTTP/1.1\r\nHost: 127.0.2.1:18102\r\nConnection: close\r\n\r\n";
    static const char curl[] = "GET /api/v1/items?page=2 HTTP/1.1\r\nHost: shop.example.com\r\n"
                               "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    static const char browser[] =
        "GET /products/42?ref=home HTTP/1.1\r\nHost: shop.example.com\r\n"
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0\r\n"
        "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8\r\n"
        "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
        "Referer: https://shop.example.com/\r\nConnection: keep-alive\r\n"
        "Cookie: session=0123456789abcdef0123456789abcdef; theme=dark; cart=3; consent=yes\r\n"
        "Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n"
        "Sec-Fetch-Site: same-origin\r\nHx-Request: true\r\nHx-Target: main\r\n\r\n";
    static const char probe[] = "GET / HTTP/1.1\r\nHost: 10.96.0.10:80\r\n"
                                "User-Agent: holdfast-pathprobe/0.1.0\r\n"
                                "Holdfast-Probe: 0f3c9e2b7d41a8c6e5b09d1f2a3c4b5d\r\n"
                                "Connection: close\r\n\r\n";
    static const char h2[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x12\x04\0\0\0\0\0";
    char tls[517];
    for (size_t i = 0; i < sizeof(tls); i++)
        tls[i] = (char)((i * 131 + 7) & 0xff); /* ClientHello-sized binary */
    tls[0] = 0x16;
    /* A POST whose first read is 64 KiB: the head, then body bytes (the scan stops at the head). */
    static char post[65536];
    int h = snprintf(post, sizeof(post),
                     "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
    memset(post + h, 'a', sizeof(post) - (size_t)h);
    static char lines[65536];
    memcpy(lines, "GET / HTTP/1.1\r\n", 16);
    for (size_t i = 16; i + 1 < sizeof(lines); i += 2) {
        lines[i] = 'a';
        lines[i + 1] = '\n';
    }
    bench("worst: 64 KiB of 2-byte header lines", lines, sizeof(lines));
    bench("wrk head (Connection: close)", wrk, sizeof(wrk) - 1);
    bench("curl head", curl, sizeof(curl) - 1);
    bench("browser head, 15 fields", browser, sizeof(browser) - 1);
    bench("the leader's probe", probe, sizeof(probe) - 1);
    bench("h2c preface + SETTINGS", h2, sizeof(h2) - 1);
    bench("TLS ClientHello-sized binary", tls, sizeof(tls));
    bench("POST head + body, 64 KiB first read", post, sizeof(post));
    return 0;
}
