/* siphash.h: SipHash-2-4, the keyed hash of every table a client can fill. */
#ifndef UPECHOD_SIPHASH_H
#define UPECHOD_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t siphash24(const uint8_t key[16], const void *data, size_t len);

#endif
