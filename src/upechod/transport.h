/* transport.h: the three ways a client reaches upechod; shared by logs and statistics. */
#ifndef UPECHOD_TRANSPORT_H
#define UPECHOD_TRANSPORT_H

enum transport {
    TRANSPORT_TCP,
    TRANSPORT_UDP,
    TRANSPORT_UNIX,
};

/* Entries of the per-transport arrays in struct server_stats. */
#define TRANSPORT_COUNT 3

const char *transport_name(enum transport t);

#endif
