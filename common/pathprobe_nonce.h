/*
 * pathprobe_nonce: the wire contract of the data-path probe, shared by the side that sends it
 * (the leader, controller/pathprobe.h) and the side that answers it (the data plane,
 * resolver/conn.c).
 *
 * Before the leader removes a target's last replica it asks "does kube-proxy send this
 * Service's traffic to a holdfast replica yet?" by sending, through the Service's ClusterIP, a
 * request with the field `Holdfast-Probe: <nonce>`. A holdfast replica answers it itself (204
 * with the same field echoed) and never forwards it; anything else that answers (the pod that
 * is going away) does not know the nonce. A fresh nonce per attempt means an answer can only
 * come from this attempt.
 *
 * A nonce is 1 to PATHPROBE_NONCE_MAX characters of [A-Za-z0-9_-]: safe to log, to echo in a
 * header and to compare byte for byte.
 */
#ifndef HOLDFAST_PATHPROBE_NONCE_H
#define HOLDFAST_PATHPROBE_NONCE_H

#include <stdbool.h>
#include <stddef.h>

/* The request field that carries the nonce, and the answer field that echoes it. */
#define PATHPROBE_HEADER "Holdfast-Probe"

/* Longest valid nonce, in characters. */
#define PATHPROBE_NONCE_MAX 64

/* Characters of a nonce made by pathprobe_nonce_new (128 random bits, hexadecimal). */
#define PATHPROBE_NONCE_NEW_LEN 32

/* True when s[0, len) is a valid nonce: 1 to PATHPROBE_NONCE_MAX of [A-Za-z0-9_-]. */
bool pathprobe_nonce_valid(const char *s, size_t len);

/*
 * Writes a fresh random nonce (PATHPROBE_NONCE_NEW_LEN hexadecimal characters from the kernel's
 * random source, getrandom(2)) and its NUL into out, which has room for outlen bytes (at least
 * PATHPROBE_NONCE_NEW_LEN + 1). Returns 0, or -1 with errno set (EINVAL: out too small; or
 * getrandom's error) and out set to "".
 */
int pathprobe_nonce_new(char *out, size_t outlen);

#endif
