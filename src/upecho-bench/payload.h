/* payload.h: the bytes upecho-bench sends, derived from a seed and the message number. */
#ifndef UPECHOD_PAYLOAD_H
#define UPECHOD_PAYLOAD_H

#include <stddef.h>
#include <stdint.h>

uint64_t payload_mix(uint64_t x);
void payload_fill(unsigned char *buf, size_t len, uint64_t seed, uint64_t msg);
void payload_datagram(unsigned char *buf, size_t len, uint64_t seed, uint64_t seq);
int payload_seq_decode(const unsigned char *buf, uint64_t *seq);

#endif
