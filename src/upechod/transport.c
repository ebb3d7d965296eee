/* transport.c: names of the transports, as logs and statistics print them. */
#include "transport.h"

const char *
transport_name(enum transport t)
{
    switch (t) {
    case TRANSPORT_TCP:
        return "tcp";
    case TRANSPORT_UDP:
        return "udp";
    case TRANSPORT_UNIX:
        return "unix";
    }
    return "?";
}
