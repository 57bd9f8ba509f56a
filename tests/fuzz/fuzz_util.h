/*
 * fuzz_util: what the libFuzzer targets of tests/fuzz share.
 *
 * Targets log at the level named by FUZZ_LOG (debug, info, warn, error; default debug, so that
 * the JSON escaping of fuzzed values in log lines is exercised too). tests/fuzz/run discards
 * the targets' stderr with -close_fd_mask=2; libFuzzer and the sanitizers report on a copy of
 * it, and fuzz_fail writes to stdout, so nothing that matters is lost.
 */
#ifndef HOLDFAST_FUZZ_UTIL_H
#define HOLDFAST_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry points, which every target defines (LLVMFuzzerInitialize optionally). */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sets the log level from FUZZ_LOG, once. Call from LLVMFuzzerInitialize or each run. */
void fuzz_init_logging(void);

/* A property the target checks does not hold: prints the message on stdout and aborts, which
 * libFuzzer reports as a crash with this input. */
void fuzz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* A NUL-terminated malloc'd copy of data[0, len) (the caller frees). Aborts when out of
 * memory: an input that small never runs the process out. */
char *fuzz_strndup(const uint8_t *data, size_t len);

/*
 * Reading an input piece by piece. fuzz_next_line takes the bytes up to the next '\n' (not
 * included; the last line may lack it) and returns false at the end of the input.
 * fuzz_next_until does the same with a separator string of several bytes.
 */
struct fuzz_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
};

bool fuzz_next_line(struct fuzz_reader *r, const uint8_t **line, size_t *len);
bool fuzz_next_until(struct fuzz_reader *r, const char *sep, const uint8_t **piece, size_t *len);

/* The bytes not read yet. */
const uint8_t *fuzz_rest(const struct fuzz_reader *r, size_t *len);

#endif
