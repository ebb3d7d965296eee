/* payload.c: the bytes upecho-bench sends, derived from a seed and the message number. */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "bench.h"
#include "payload.h"

/*
 * Payload bytes: lowercase letters (what the echo must change) mixed with
 * the bytes next to a-z, digits, capitals, controls, NUL and 8-bit bytes
 * (what it must leave alone).  64 entries, so 6 random bits pick one.
 */
static const unsigned char payload_alphabet[64] = {
    'a',  'b',  'c',  'd',  'e',  'f',  'g',  'h',  'i', 'j', 'k', 'l', 'm',  'n',  'o',  'p',
    'q',  'r',  's',  't',  'u',  'v',  'w',  'x',  'y', 'z', '0', '1', '2',  '3',  '4',  '5',
    '6',  '7',  '8',  '9',  '@',  '[',  '`',  '{',  'A', 'M', 'Z', ' ', '\0', '\n', '\r', '\t',
    0x7f, 0x80, 0xc3, 0xa9, 0xe1, 0xf1, 0xff, 0xb5, '-', '_', '.', ',', ':',  ';',  '!',  '~',
};

static const char payload_hex[16] = "0123456789ABCDEF";

/* splitmix64's finalizer: a cheap, well-mixed 64-bit hash. */
uint64_t
payload_mix(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

/*
 * Payload bytes come from one table of the alphabet, filled once: writing a
 * message is then a memcpy from an offset that depends on the connection's
 * seed and the message number, cheap enough that a 16 KiB bulk run is not
 * paced by the client.  The table is longer than any offset step, so
 * neighbouring messages differ, and a swapped, dropped or repeated message
 * shows up in the reply check.
 */
#define PAYLOAD_TABLE (64 * 1024)

static unsigned char payload_table[PAYLOAD_TABLE];
static pthread_once_t payload_table_once = PTHREAD_ONCE_INIT;

static void
payload_table_fill(void)
{
    uint64_t state = 0x5EED;

    for (size_t i = 0; i < PAYLOAD_TABLE; i += 10) {
        uint64_t r = payload_mix(state += 0x9E3779B97F4A7C15ULL);

        for (size_t k = 0; k < 10 && i + k < PAYLOAD_TABLE; k++, r >>= 6)
            payload_table[i + k] = (unsigned char)payload_alphabet[r & 63];
    }
}

/* The payload of message msg of the connection seeded seed. */
void
payload_fill(unsigned char *buf, size_t len, uint64_t seed, uint64_t msg)
{
    size_t off = (size_t)(payload_mix(seed ^ payload_mix(msg + 1)) % PAYLOAD_TABLE);

    pthread_once(&payload_table_once, payload_table_fill);
    while (len > 0) {
        size_t n = len < PAYLOAD_TABLE - off ? len : PAYLOAD_TABLE - off;

        memcpy(buf, payload_table + off, n);
        buf += n;
        len -= n;
        off = 0;
    }
}

/*
 * A UDP message: the sequence number as 8 uppercase hex digits, which the
 * echo leaves as they are, then the payload.
 */
void
payload_datagram(unsigned char *buf, size_t len, uint64_t seed, uint64_t seq)
{
    for (int i = 0; i < BENCH_UDP_MIN_SIZE; i++)
        buf[i] = (unsigned char)payload_hex[(seq >> (4 * (BENCH_UDP_MIN_SIZE - 1 - i))) & 15];
    payload_fill(buf + BENCH_UDP_MIN_SIZE, len - BENCH_UDP_MIN_SIZE, seed, seq);
}

/* Read back the sequence number; -EINVAL if a header byte is not an uppercase hex digit. */
int
payload_seq_decode(const unsigned char *buf, uint64_t *seq)
{
    uint64_t v = 0;

    for (int i = 0; i < BENCH_UDP_MIN_SIZE; i++) {
        unsigned char c = buf[i];

        if (c >= '0' && c <= '9')
            v = v << 4 | (uint64_t)(c - '0');
        else if (c >= 'A' && c <= 'F')
            v = v << 4 | (uint64_t)(c - 'A' + 10);
        else
            return -EINVAL;
    }
    *seq = v;
    return 0;
}
