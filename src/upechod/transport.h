/* transport.h: the three ways a client reaches upechod; shared by logs and statistics. */
#ifndef UPECHOD_TRANSPORT_H
#define UPECHOD_TRANSPORT_H

enum transport {
    TRANSPORT_TCP,
    TRANSPORT_UDP,
    TRANSPORT_UNIX,
};

const char *transport_name(enum transport t);

#endif
