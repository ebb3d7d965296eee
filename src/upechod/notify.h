/* notify.h: the service manager's readiness protocol (sd_notify(3)), without libsystemd. */
#ifndef UPECHOD_NOTIFY_H
#define UPECHOD_NOTIFY_H

#include <stdint.h>

struct notify;

/*
 * NULL when NOTIFY_SOCKET is unset (not started by a service manager, or it
 * asked for no notifications) or unusable; every other call takes NULL and
 * does nothing, so callers never test for it.
 */
struct notify *notify_new(void);
void notify_free(struct notify *n);

/* One datagram of "KEY=VALUE" lines; 0 or -errno, never blocks. */
int notify_send(struct notify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The watchdog period the manager expects pings within, 0 when it expects none. */
uint64_t notify_watchdog_usec(void);

int notify_ready(struct notify *n, const char *status);
int notify_reloading(struct notify *n);
int notify_stopping(struct notify *n);
int notify_watchdog(struct notify *n);
int notify_status(struct notify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
