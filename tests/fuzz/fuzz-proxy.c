/* fuzz-proxy.c: libFuzzer target feeding arbitrary bytes to the PROXY header parser. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/*
 * Beyond not crashing, the parser's promises to the daemon: a header never
 * longer than the input or PROXY_MAX; never PROXY_MORE once PROXY_MAX bytes
 * are there (so a connection's input stays bounded); a reason with every
 * error; the same answer whatever follows a whole header; and, for a
 * header, PROXY_MORE on every shorter prefix of it.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct proxy_header ph, again;
    const char *why;
    enum proxy_result r;
    uint8_t *copy;

    /* A heap copy of exactly size bytes, so that ASan sees any read past the end. */
    copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    r = proxy_parse(copy, size, &ph, &why);
    switch (r) {
    case PROXY_MORE:
        if (size >= PROXY_MAX)
            abort();
        break;
    case PROXY_ERROR:
        if (why == NULL || strchr(why, '\n') != NULL)
            abort();
        break;
    case PROXY_DONE:
        if (ph.ph_len == 0 || ph.ph_len > size || ph.ph_len > PROXY_MAX)
            abort();
        if (proxy_parse(copy, ph.ph_len, &again, &why) != PROXY_DONE || again.ph_len != ph.ph_len ||
            again.ph_local != ph.ph_local || again.ph_src_len != ph.ph_src_len ||
            memcmp(&again.ph_src, &ph.ph_src, sizeof(ph.ph_src)) != 0)
            abort();
        if (proxy_parse(copy, ph.ph_len - 1, &again, &why) != PROXY_MORE)
            abort();
        if (ph.ph_src.ss_family == AF_UNIX &&
            strnlen(((struct sockaddr_un *)&ph.ph_src)->sun_path, sizeof(struct sockaddr_un)) >=
                sizeof(((struct sockaddr_un *)0)->sun_path))
            abort();
        break;
    default:
        abort();
    }

    /* The same bytes as a proxy_protocol_from item. */
    if (size < 80) {
        char text[80];
        struct proxy_net net;

        memcpy(text, data, size);
        text[size] = '\0';
        if (proxy_net_parse(text, &net, &why) == 0 &&
            (net.pn_prefix > (net.pn_family == AF_INET ? 32u : 128u)))
            abort();
    }
    free(copy);
    return 0;
}
