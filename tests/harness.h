/* harness.h: run the real upechod in a private temp dir and talk to it over loopback. */
#ifndef UPECHOD_HARNESS_H
#define UPECHOD_HARNESS_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/un.h>

/* Longest temp dir path; short, so that socket paths under it fit sun_path. */
#define HARNESS_DIR_MAX 256

/* Bound on daemon_start()'s wait for the "ready" line. */
#define HARNESS_READY_TIMEOUT_MS 10000
/* Bound on daemon_stop()'s wait after SIGTERM, before it sends SIGKILL. */
#define HARNESS_STOP_TIMEOUT_MS 15000

/*
 * One daemon process.  Every path lives in dp_dir, a fresh directory that
 * daemon_stop() removes.  Ports are 0 when the log named no such listener.
 */
struct daemon_proc {
    pid_t dp_pid;                 /* -1 once reaped */
    int dp_status;                /* see daemon_wait(), valid once reaped */
    char dp_dir[HARNESS_DIR_MAX]; /* private temp dir, "@DIR@" in the INI text */
    char dp_config[PATH_MAX];     /* DIR/upechod.ini */
    char dp_log[PATH_MAX];        /* DIR/upechod.log: the daemon's stdout and stderr */
    int dp_tcp_port;              /* first "listening on tcp 127.0.0.1:P" */
    int dp_tcp6_port;             /* first "listening on tcp [::1]:P" */
    int dp_udp_port;              /* first "listening on udp 127.0.0.1:P" */
    int dp_udp6_port;             /* first "listening on udp [::1]:P" */
    char dp_unix_path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* "listening on unix" */
    int dp_metrics_port; /* last "serving metrics on http://127.0.0.1:P/metrics" */
    pid_t dp_reaper_pid; /* removes dp_dir if we die first */
    int dp_reaper_fd;    /* its pipe; closing it releases the reaper */
};

/*
 * Config text for the usual listeners, each on loopback port 0 (the unix
 * one wants a path = after it), every other transport disabled.  A test
 * appends its own sections by string concatenation; the UDP and unix ones
 * end inside their listener's section, so its keys may follow directly.
 */
#define INI_TCP4_ONLY "[tcp]\nlisten = 127.0.0.1:0\n[udp]\nenabled = no\n"
#define INI_TCP6_ONLY "[tcp]\nlisten = [::1]:0\n[udp]\nenabled = no\n"
#define INI_UDP4_ONLY "[tcp]\nenabled = no\n[udp]\nlisten = 127.0.0.1:0\n"
#define INI_UDP6_ONLY "[tcp]\nenabled = no\n[udp]\nlisten = [::1]:0\n"
#define INI_UNIX_ONLY "[tcp]\nenabled = no\n[udp]\nenabled = no\n[unix]\nenabled = yes\n"
/* TCP and UDP on 127.0.0.1 port 0 and a unix socket, which wants a path = after it. */
#define INI_ALL "[tcp]\nlisten = 127.0.0.1:0\n[udp]\nlisten = 127.0.0.1:0\n[unix]\nenabled = yes\n"

/*
 * Start $UPECHOD -c DIR/upechod.ini [args...] and wait for its "ready" line.
 * The daemon is killed if the thread that started it dies, and its temp
 * dir removed if the process does, so a failed test leaves nothing behind.
 * ini_text may be NULL: then no config is written and no -c is passed, so
 * args must say everything.  Returns 0, or -ECHILD when the daemon exited
 * first (its status is then in dp_status), -ETIMEDOUT, or another -errno.
 * Whatever it returns, call daemon_stop() to clean up.
 */
int daemon_start(struct daemon_proc *dp, const char *ini_text);
int daemon_start_args(struct daemon_proc *dp, const char *ini_text, const char *const *args);

/*
 * Like daemon_start() with the daemon's open-file limit, soft and hard, set
 * to nofile before exec (so it cannot raise it back): descriptor exhaustion.
 */
int daemon_start_nofile(struct daemon_proc *dp, const char *ini_text, unsigned long nofile);

/* Like daemon_start_args() but returns right after fork: for runs that never get ready. */
int daemon_spawn(struct daemon_proc *dp, const char *ini_text, const char *const *args);

int daemon_signal(struct daemon_proc *dp, int sig);

/*
 * Wait up to timeout_ms for the daemon to exit.  *status gets the exit code,
 * or 128 + the signal number if a signal killed it.  Returns 0 or -ETIMEDOUT.
 */
int daemon_wait(struct daemon_proc *dp, int timeout_ms, int *status);

/*
 * SIGTERM, wait, SIGKILL if it is still there after HARNESS_STOP_TIMEOUT_MS,
 * then remove the temp dir.  Returns the status as daemon_wait() reports it.
 * Safe to call again and on a daemon that never started.
 */
int daemon_stop(struct daemon_proc *dp);

/*
 * Replace the daemon's configuration file with ini_text, "@DIR@" standing
 * for dp_dir as for daemon_start(), by a rename: a SIGHUP that comes
 * meanwhile reads the old file or the new one, never half of one.  0 or -errno.
 */
int daemon_write_config(const struct daemon_proc *dp, const char *ini_text);

/* Whether the daemon's output so far contains needle. */
bool daemon_log_contains(const struct daemon_proc *dp, const char *needle);
bool daemon_scan_log(struct daemon_proc *dp);
/* How many times needle occurs in the daemon's output so far, or -errno. */
int daemon_log_count(const struct daemon_proc *dp, const char *needle);
/* Copy the daemon's output to our stderr, for the test log. */
void daemon_dump_log(const struct daemon_proc *dp);

/* Resident set size in KiB from /proc/PID/status, or -errno. */
long daemon_rss_kib(const struct daemon_proc *dp);
/* utime + stime in clock ticks from /proc/PID/stat, or -errno. */
long long daemon_cpu_ticks(const struct daemon_proc *dp);
/* Descriptors the daemon holds open, from /proc/PID/fd, or -errno. */
int daemon_nfds(const struct daemon_proc *dp);
/*
 * Wait up to timeout_ms for the daemon to hold exactly want descriptors:
 * connections it frees go at its own pace.  The last count, or -errno.
 */
int daemon_wait_nfds(const struct daemon_proc *dp, int want, int timeout_ms);

/*
 * Sockets.  Each returns a blocking, close-on-exec fd or -errno, and never
 * waits longer than HARNESS_CONNECT_TIMEOUT_MS.  family is AF_INET
 * (127.0.0.1) or AF_INET6 (::1).
 */
#define HARNESS_CONNECT_TIMEOUT_MS 5000
int tcp_connect(int family, int port);
int unix_connect(const char *path);
/* A UDP socket connect()ed to the loopback port, so plain send()/recv() work. */
int udp_socket_for(int port);
int udp_socket_family(int family, int port);
/* A TCP listener on loopback `port` (0: a free one), for address-in-use tests; *bound gets it. */
int tcp_listen_on(int family, int port, int *bound);

/*
 * Send the raw HTTP request text to 127.0.0.1:port and read the response
 * until the server closes, at most size - 1 bytes, NUL-terminated in buf.
 * Returns its length, or -errno (-ETIMEDOUT when no close came in timeout_ms).
 */
ssize_t http_request(int port, const char *request, char *buf, size_t size, int timeout_ms);
/* GET path with Connection: close; the HTTP status, or -errno.  *body points into buf. */
int http_get(int port, const char *path, char *buf, size_t size, const char **body);

/* Whether ::1 can be bound here; IPv6 tests skip when it cannot. */
bool ipv6_available(void);

int set_nonblocking(int fd, bool on);

/* Write all n bytes, waiting on poll() when the fd is non-blocking.  0 or -errno. */
int write_all(int fd, const void *buf, size_t n);

/*
 * Send without reading until nothing more goes in for stall_ms, or cap bytes
 * are out: every buffer between us and the peer is then full.  Byte k of
 * what is sent is ring[k % ring_len], and no send() goes past the ring's
 * end.  The sends do not block, whatever the fd's mode, which is left as it
 * is.  Returns how many bytes went in, or -errno.
 */
ssize_t send_until_stall(int fd, const void *ring, size_t ring_len, size_t cap, int stall_ms);

/*
 * Read exactly n bytes within timeout_ms in total.  Returns n, fewer on EOF,
 * or -ETIMEDOUT / -errno.
 */
ssize_t read_exact(int fd, void *buf, size_t n, int timeout_ms);

/* Wait for EOF: 0, -EPROTO if data came instead, -ETIMEDOUT, or -errno. */
int read_eof(int fd, int timeout_ms);

/* Raise the soft open-file limit to at least want (bounded by the hard limit). 0 or -errno. */
int raise_nofile(unsigned long want);

/*
 * Whether the daemon runs under AddressSanitizer (UPECHOD_ASAN set, and not
 * to 0): it is then slower and bigger, so memory figures are not asserted
 * and time bounds get slack.
 */
bool under_asan(void);

/* Milliseconds on the monotonic clock. */
long long now_ms(void);
/* Microseconds on the monotonic clock, as MONOTONIC_USEC= counts them. */
uint64_t now_usec(void);

/* Deterministic pseudo-random bytes for payloads; equal seeds give equal bytes. */
void fill_pattern(void *buf, size_t n, unsigned long long seed);

/*
 * The reference transform, written independently of src/upper.c so the
 * tests do not share a bug with the daemon: dst = src with a-z uppercased.
 */
void ref_upper(void *dst, const void *src, size_t n);
/* Offset of the first byte of reply that is not the transform of sent, or -1. */
long ref_mismatch(const void *reply, const void *sent, size_t n);

/*
 * A directory under /tmp (short, so that socket paths in it fit sun_path)
 * for one test program's files, made and removed by check's unchecked
 * fixture: tcase_add_unchecked_fixture(tc, scratch_setup, scratch_teardown).
 * That runs in the runner process, which a failed assertion does not end,
 * so the directory goes however the tests went.  Setup aborts if it cannot
 * make it, as a fixture has no other way to fail.
 */
void scratch_setup(void);
void scratch_teardown(void);
const char *scratch_dir(void);

/*
 * The service manager's end of NOTIFY_SOCKET: a datagram socket in a new
 * directory under scratch_dir(), or at an abstract @name.  SO_PASSCRED has
 * the kernel attach each sender's pid, which systemd checks against the
 * main pid (NotifyAccess=main).
 */
struct manager {
    int m_fd;
    char m_dir[80];  /* the socket's directory, "" for an abstract name */
    char m_addr[96]; /* what NOTIFY_SOCKET says */
};

/* Bind a manager socket and point NOTIFY_SOCKET at it.  0 or -errno. */
int manager_open(struct manager *m, bool abstract);
/* Close the socket, remove its directory with whatever else went in it, unset NOTIFY_SOCKET. */
void manager_close(struct manager *m);
/*
 * The next datagram within timeout_ms, NUL-terminated in buf, and its
 * sender's pid in *pid (-1 if unknown; pid may be NULL).  Returns its
 * length, -ETIMEDOUT, or -errno.
 */
ssize_t manager_recv(struct manager *m, char *buf, size_t size, pid_t *pid, long long timeout_ms);

/*
 * Socket activation's environment, as systemd sets it for the process pid
 * that will find n sockets at fds 3 on: LISTEN_PID, LISTEN_FDS, and
 * LISTEN_FDNAMES (unset when names is NULL).
 */
void listen_env_set(pid_t pid, size_t n, const char *names);

#endif
