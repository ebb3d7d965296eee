/* fuzz-stream.c: libFuzzer target feeding the echo data in arbitrary chunks and chains. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "stream.h"

/*
 * The input is a script of steps.  Each step is an op byte and a size byte;
 * steps that add data then take their payload from the script, or make it
 * up when the op asks for a synthetic payload (so that a short script can
 * still push large chunks).
 *
 *   op & 0x0f   what to do, see enum fuzz_op (13 to 15 echo as well)
 *   op & 0x80   size is the size byte times 257 (up to 64 KiB), else the byte itself
 *   op & 0x40   synthetic payload: size bytes of a pattern seeded by the op byte
 *   op & 0x20   for echo: freeze the buffers as a socket bufferevent does
 *   op & 0x10   for echo: the read callback's path, each read's bytes
 *               uppercased apart and appended with stream_queue_bytes()
 *
 * A model of what the input buffer holds is kept alongside; every echo must
 * move exactly that, and at the end everything read back from the output
 * must be the uppercase of everything added, in order, byte for byte.
 * libevent's heap is counted through event_set_mem_functions(), so that
 * tiny reads queued and never drained can be held to the output's bound.
 */
enum fuzz_op {
    FUZZ_ADD,         /* evbuffer_add */
    FUZZ_REFERENCE,   /* evbuffer_add_reference: memory the buffer must not write to */
    FUZZ_PREPEND,     /* evbuffer_prepend */
    FUZZ_MANY,        /* small adds, each its own chain moved in with evbuffer_add_buffer */
    FUZZ_EXPAND,      /* evbuffer_expand: empty space at the end, no data */
    FUZZ_RESERVE,     /* evbuffer_reserve_space + commit_space, as evbuffer_read does */
    FUZZ_PREPEND_BUF, /* evbuffer_prepend_buffer */
    FUZZ_BUFFER_REF,  /* evbuffer_add_buffer_reference: chains shared with another buffer */
    FUZZ_ECHO,        /* stream_echo(in, out), or the read callback's in-place path */
    FUZZ_DRAIN,       /* evbuffer_remove from out, as a socket write would; size 0 = all */
    FUZZ_ADD_BUFFER,  /* one add into a side buffer, moved in with evbuffer_add_buffer */
    FUZZ_DRAIN_SMALL, /* remove from out in steps of a few bytes */
    FUZZ_TINY_READS,  /* many small socket-like reads echoed in place, out never drained */
};

#define FUZZ_MAX_CHUNK (255 * 257)
/* Bound on the bytes one input adds, so that every run stays fast. */
#define FUZZ_MAX_TOTAL (256 * 1024)
/* Bound on the chains one step makes, each a heap block of its own. */
#define FUZZ_MAX_PIECES 256
/* Most reads one FUZZ_TINY_READS step makes. */
#define FUZZ_MAX_READS 4096
/* Heap the output may take beyond 1.5 times its bytes: a partly filled chain or two. */
#define FUZZ_HEAP_SLACK (16 * 1024)
/* Bound on the side buffers evbuffer_add_buffer_reference shares chains with. */
#define FUZZ_MAX_SHARED 64

/* A growable byte array, for the model and for the output read back. */
struct fuzz_bytes {
    unsigned char *fb_data;
    size_t fb_len;
    size_t fb_cap;
};

/* A side buffer whose chains `in` references, with the bytes it must keep. */
struct fuzz_shared {
    struct evbuffer *fs_buf;
    unsigned char *fs_orig;
    size_t fs_len;
};

struct fuzz_state {
    const uint8_t *fz_data;
    size_t fz_size;
    size_t fz_pos;
    size_t fz_total; /* bytes added so far */
    struct evbuffer *fz_in;
    struct evbuffer *fz_out;
    struct evbuffer *fz_side;
    struct fuzz_bytes fz_pending;  /* what fz_in holds */
    struct fuzz_bytes fz_expected; /* uppercase of everything echoed so far */
    struct fuzz_bytes fz_result;   /* everything read back from fz_out */
    struct fuzz_shared fz_shared[FUZZ_MAX_SHARED];
    size_t fz_nshared;
    unsigned char fz_chunk[FUZZ_MAX_CHUNK];
};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Bytes of heap libevent holds right now, as malloc_usable_size() counts them. */
static size_t fuzz_heap;

static void *
fuzz_mm_malloc(size_t n)
{
    void *p = malloc(n);

    if (p != NULL)
        fuzz_heap += malloc_usable_size(p);
    return p;
}

static void *
fuzz_mm_realloc(void *p, size_t n)
{
    size_t old = p != NULL ? malloc_usable_size(p) : 0;
    void *q = realloc(p, n);

    if (q != NULL)
        fuzz_heap += malloc_usable_size(q) - old;
    return q;
}

static void
fuzz_mm_free(void *p)
{
    if (p != NULL)
        fuzz_heap -= malloc_usable_size(p);
    free(p);
}

/* Before libevent allocates anything: count its heap. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    event_set_mem_functions(fuzz_mm_malloc, fuzz_mm_realloc, fuzz_mm_free);
    return 0;
}

/* Reference blocks handed to evbuffer_add_reference and not yet given back. */
static size_t fuzz_refs_live;

static void
fuzz_fail(const char *what)
{
    fprintf(stderr, "fuzz-stream: %s\n", what);
    abort();
}

/*
 * The reference transform, written out here rather than taken from upper.c.
 * The per-byte loops of the model are kept out of the coverage feedback:
 * they say nothing about the code under test and would cost most of the time.
 */
__attribute__((noinline, no_sanitize("coverage"))) static void
fuzz_upper(unsigned char *dst, const unsigned char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] >= 'a' && src[i] <= 'z' ? (unsigned char)(src[i] - 'a' + 'A') : src[i];
}

/* A pattern that walks through every byte value: lower case, upper case, their neighbours, NUL. */
__attribute__((noinline, no_sanitize("coverage"))) static void
fuzz_pattern(unsigned char *dst, size_t n, unsigned char seed)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = (unsigned char)(seed + i * 7 + i / 251);
}

static void
fuzz_reserve(struct fuzz_bytes *b, size_t more)
{
    size_t cap = b->fb_cap ? b->fb_cap : 4096;

    if (b->fb_len + more <= b->fb_cap)
        return;
    while (cap < b->fb_len + more)
        cap *= 2;
    if ((b->fb_data = realloc(b->fb_data, cap)) == NULL)
        fuzz_fail("out of memory");
    b->fb_cap = cap;
}

static void
fuzz_append(struct fuzz_bytes *b, const unsigned char *p, size_t n)
{
    fuzz_reserve(b, n);
    if (n > 0)
        memcpy(b->fb_data + b->fb_len, p, n);
    b->fb_len += n;
}

static void
fuzz_prepend(struct fuzz_bytes *b, const unsigned char *p, size_t n)
{
    fuzz_reserve(b, n);
    if (n == 0)
        return;
    memmove(b->fb_data + n, b->fb_data, b->fb_len);
    memcpy(b->fb_data, p, n);
    b->fb_len += n;
}

static int
fuzz_byte(struct fuzz_state *fz, unsigned char *c)
{
    if (fz->fz_pos >= fz->fz_size)
        return 0;
    *c = fz->fz_data[fz->fz_pos++];
    return 1;
}

/*
 * Fill fz_chunk with the payload of a step, taken from the script or made
 * up, and return its length (short when the script or FUZZ_MAX_TOTAL ends).
 */
static size_t
fuzz_payload(struct fuzz_state *fz, unsigned char op, size_t size)
{
    if (fz->fz_total + size > FUZZ_MAX_TOTAL)
        size = FUZZ_MAX_TOTAL - fz->fz_total;
    if (op & 0x40) {
        fuzz_pattern(fz->fz_chunk, size, op);
    } else {
        if (size > fz->fz_size - fz->fz_pos)
            size = fz->fz_size - fz->fz_pos;
        memcpy(fz->fz_chunk, fz->fz_data + fz->fz_pos, size);
        fz->fz_pos += size;
    }
    fz->fz_total += size;
    return size;
}

/*
 * The caller of evbuffer_add_reference keeps ownership of the memory and
 * only lends it: its bytes must come back as they went in.  The block
 * holds the lent bytes followed by a pristine copy.
 */
static void
fuzz_ref_cleanup(const void *data, size_t len, void *extra)
{
    unsigned char *block = extra;

    if (memcmp(block, block + len, len) != 0)
        fuzz_fail("memory added with evbuffer_add_reference was written to");
    free(block);
    fuzz_refs_live--;
}

static void
fuzz_add_reference(struct fuzz_state *fz, size_t n)
{
    unsigned char *block = malloc(2 * n + 1);

    if (block == NULL)
        fuzz_fail("out of memory");
    memcpy(block, fz->fz_chunk, n);
    memcpy(block + n, fz->fz_chunk, n);
    fuzz_refs_live++;
    if (evbuffer_add_reference(fz->fz_in, block, n, fuzz_ref_cleanup, block) != 0) {
        fuzz_ref_cleanup(block, n, block);
        return;
    }
    fuzz_append(&fz->fz_pending, fz->fz_chunk, n);
}

/* Chains shared with a side buffer: what the echo does to `in` must not show there. */
static void
fuzz_add_buffer_reference(struct fuzz_state *fz, size_t n)
{
    struct fuzz_shared *sh;

    /*
     * libevent 2.1.12 as released corrupts a buffer that holds nothing but
     * empty chains (after evbuffer_expand, say) when a reference is added
     * to it: the chain is freed twice.  Debian's 2.1.12-stable-8+deb12u1
     * fixes it; upechod never shares chains, so only this harness could
     * meet the bug, and it does not ask for it.
     */
    if (fz->fz_nshared == FUZZ_MAX_SHARED || evbuffer_get_length(fz->fz_in) == 0)
        return;
    sh = &fz->fz_shared[fz->fz_nshared];
    if ((sh->fs_buf = evbuffer_new()) == NULL || (sh->fs_orig = malloc(n + 1)) == NULL)
        fuzz_fail("out of memory");
    memcpy(sh->fs_orig, fz->fz_chunk, n);
    sh->fs_len = n;
    fz->fz_nshared++;
    if (evbuffer_add(sh->fs_buf, fz->fz_chunk, n) != 0)
        fuzz_fail("evbuffer_add failed");
    if (evbuffer_add_buffer_reference(fz->fz_in, sh->fs_buf) == 0)
        fuzz_append(&fz->fz_pending, fz->fz_chunk, n);
}

/* Each piece its own chain: an add into an empty side buffer, whose chain then moves. */
static void
fuzz_add_many(struct fuzz_state *fz, size_t n, size_t piece)
{
    if (n / piece > FUZZ_MAX_PIECES)
        piece = n / FUZZ_MAX_PIECES + 1;
    for (size_t off = 0; off < n; off += piece) {
        size_t k = n - off < piece ? n - off : piece;

        if (evbuffer_add(fz->fz_side, fz->fz_chunk + off, k) != 0 ||
            evbuffer_add_buffer(fz->fz_in, fz->fz_side) != 0)
            fuzz_fail("evbuffer_add or evbuffer_add_buffer failed");
    }
    fuzz_append(&fz->fz_pending, fz->fz_chunk, n);
}

/* Like a socket read: reserve up to two extents, fill only `fill` bytes of them, commit. */
static void
fuzz_reserve_commit(struct fuzz_state *fz, size_t n, size_t fill)
{
    struct evbuffer_iovec v[2];
    size_t done = 0;
    int nv;

    if (n == 0)
        return;
    if (fill > n)
        fill = n;
    if ((nv = evbuffer_reserve_space(fz->fz_in, n, v, 2)) <= 0)
        fuzz_fail("evbuffer_reserve_space failed");
    for (int i = 0; i < nv; i++) {
        size_t k = v[i].iov_len < fill - done ? v[i].iov_len : fill - done;

        memcpy(v[i].iov_base, fz->fz_chunk + done, k);
        v[i].iov_len = k;
        done += k;
    }
    if (evbuffer_commit_space(fz->fz_in, v, nv) != 0)
        fuzz_fail("evbuffer_commit_space failed");
    fuzz_append(&fz->fz_pending, fz->fz_chunk, fill);
}

/*
 * Echo, then check: the count returned, `in` empty, and what `out` now
 * holds beyond what was read back.  frozen: the input's end and the
 * output's start are frozen, as they are inside a bufferevent's read
 * callback.  as_read: as the read callback does with what it read, the
 * bytes uppercased in a buffer of their own and appended to `out` with
 * stream_queue_bytes().
 */
static void
fuzz_echo(struct fuzz_state *fz, int frozen, int as_read)
{
    size_t n, want = fz->fz_pending.fb_len;

    if (frozen) {
        evbuffer_freeze(fz->fz_in, 0);
        evbuffer_freeze(fz->fz_out, 1);
    }
    if (as_read) {
        unsigned char *read = malloc(want ? want : 1), *up = malloc(want ? want : 1);

        if (read == NULL || up == NULL)
            fuzz_fail("out of memory");
        if (evbuffer_remove(fz->fz_in, read, want) != (int)want)
            fuzz_fail("evbuffer_remove returned a short count");
        fuzz_upper(up, read, want);
        n = stream_queue_bytes(fz->fz_out, up, want) == 0 ? want : 0;
        free(read);
        free(up);
    } else {
        n = stream_echo(fz->fz_in, fz->fz_out);
    }
    if (frozen) {
        evbuffer_unfreeze(fz->fz_in, 0);
        evbuffer_unfreeze(fz->fz_out, 1);
    }
    if (n != want)
        fuzz_fail("the echo returned a wrong count");
    if (evbuffer_get_length(fz->fz_in) != 0)
        fuzz_fail("the echo left bytes in its input");
    fuzz_reserve(&fz->fz_expected, want);
    if (want > 0)
        fuzz_upper(fz->fz_expected.fb_data + fz->fz_expected.fb_len, fz->fz_pending.fb_data, want);
    fz->fz_expected.fb_len += want;
    fz->fz_pending.fb_len = 0;
    if (evbuffer_get_length(fz->fz_out) != fz->fz_expected.fb_len - fz->fz_result.fb_len)
        fuzz_fail("the output holds a wrong number of bytes");
}

/* Read up to n bytes back from out (n == 0: all of it). */
static void
fuzz_drain(struct fuzz_state *fz, size_t n)
{
    size_t avail = evbuffer_get_length(fz->fz_out);
    int got;

    if (n == 0 || n > avail)
        n = avail;
    if (n == 0)
        return;
    fuzz_reserve(&fz->fz_result, n);
    got = evbuffer_remove(fz->fz_out, fz->fz_result.fb_data + fz->fz_result.fb_len, n);
    if (got < 0 || (size_t)got != n)
        fuzz_fail("evbuffer_remove returned a short count");
    fz->fz_result.fb_len += n;
}

/*
 * A client writing a few bytes at a time to a server whose client never
 * reads: each read lands in a chain of its own, sized for it, is echoed in
 * place and queued.  The output must take no more than 1.5 times its
 * bytes of heap, whatever the size of the reads: a 1-byte read must not
 * keep its 1 KiB chain.
 */
static void
fuzz_tiny_reads(struct fuzz_state *fz, unsigned char op, size_t reads, unsigned char shape)
{
    size_t heap0, out0, added;

    fuzz_echo(fz, 0, 0);
    heap0 = fuzz_heap;
    out0 = evbuffer_get_length(fz->fz_out);
    if (reads > FUZZ_MAX_READS)
        reads = FUZZ_MAX_READS;
    for (size_t i = 0; i < reads && fz->fz_total < FUZZ_MAX_TOTAL; i++) {
        /* 1 to 16 bytes, or up to 4.6 KiB across libevent's chain size steps. */
        size_t piece = shape & 0x80 ? 1 + (shape & 0x7f) * 37 : 1 + (shape + i) % 16;
        size_t n = fuzz_payload(fz, (unsigned char)(op | 0x40), piece);

        fuzz_reserve_commit(fz, n, n);
        fuzz_echo(fz, 1, 1);
    }
    added = evbuffer_get_length(fz->fz_out) - out0;
    if (fuzz_heap > heap0 && fuzz_heap - heap0 > added + added / 2 + FUZZ_HEAP_SLACK)
        fuzz_fail("queued echo of small reads takes more than 1.5 times its size in heap");
}

static void
fuzz_step(struct fuzz_state *fz, unsigned char op, unsigned char sb)
{
    size_t size = (op & 0x80) ? (size_t)sb * 257 : sb;
    unsigned char extra = 0;
    size_t n;

    switch (op & 0x0f) {
    case FUZZ_ADD:
        n = fuzz_payload(fz, op, size);
        if (evbuffer_add(fz->fz_in, fz->fz_chunk, n) != 0)
            fuzz_fail("evbuffer_add failed");
        fuzz_append(&fz->fz_pending, fz->fz_chunk, n);
        break;
    case FUZZ_REFERENCE:
        fuzz_add_reference(fz, fuzz_payload(fz, op, size));
        break;
    case FUZZ_PREPEND:
        n = fuzz_payload(fz, op, size);
        if (evbuffer_prepend(fz->fz_in, fz->fz_chunk, n) != 0)
            fuzz_fail("evbuffer_prepend failed");
        fuzz_prepend(&fz->fz_pending, fz->fz_chunk, n);
        break;
    case FUZZ_MANY:
        fuzz_byte(fz, &extra);
        fuzz_add_many(fz, fuzz_payload(fz, op, size), 1 + extra % 64);
        break;
    case FUZZ_EXPAND:
        if (evbuffer_expand(fz->fz_in, size) != 0)
            fuzz_fail("evbuffer_expand failed");
        break;
    case FUZZ_RESERVE:
        fuzz_byte(fz, &extra);
        n = fuzz_payload(fz, op, size);
        fuzz_reserve_commit(fz, n, n - n * extra / 512);
        break;
    case FUZZ_PREPEND_BUF:
        n = fuzz_payload(fz, op, size);
        if (evbuffer_add(fz->fz_side, fz->fz_chunk, n) != 0 ||
            evbuffer_prepend_buffer(fz->fz_in, fz->fz_side) != 0)
            fuzz_fail("evbuffer_add or evbuffer_prepend_buffer failed");
        fuzz_prepend(&fz->fz_pending, fz->fz_chunk, n);
        break;
    case FUZZ_BUFFER_REF:
        fuzz_add_buffer_reference(fz, fuzz_payload(fz, op, size));
        break;
    case FUZZ_DRAIN:
        fuzz_drain(fz, size);
        break;
    case FUZZ_ADD_BUFFER:
        n = fuzz_payload(fz, op, size);
        if (evbuffer_add(fz->fz_side, fz->fz_chunk, n) != 0 ||
            evbuffer_add_buffer(fz->fz_in, fz->fz_side) != 0)
            fuzz_fail("evbuffer_add or evbuffer_add_buffer failed");
        fuzz_append(&fz->fz_pending, fz->fz_chunk, n);
        break;
    case FUZZ_DRAIN_SMALL:
        for (size_t i = 0; i < 16 && evbuffer_get_length(fz->fz_out) > 0; i++)
            fuzz_drain(fz, 1 + sb % 7);
        break;
    case FUZZ_TINY_READS:
        fuzz_byte(fz, &extra);
        fuzz_tiny_reads(fz, op, size, extra);
        break;
    default:
        fuzz_echo(fz, op & 0x20, op & 0x10);
        break;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_state *fz = calloc(1, sizeof(*fz));
    unsigned char op, sb;

    if (fz == NULL)
        return 0;
    fz->fz_data = data;
    fz->fz_size = size;
    fz->fz_in = evbuffer_new();
    fz->fz_out = evbuffer_new();
    fz->fz_side = evbuffer_new();
    if (fz->fz_in == NULL || fz->fz_out == NULL || fz->fz_side == NULL)
        fuzz_fail("out of memory");

    while (fuzz_byte(fz, &op)) {
        sb = 0;
        fuzz_byte(fz, &sb);
        fuzz_step(fz, op, sb);
    }
    fuzz_echo(fz, 1, 0);
    fuzz_drain(fz, 0);

    if (fz->fz_result.fb_len != fz->fz_expected.fb_len ||
        (fz->fz_result.fb_len > 0 &&
         memcmp(fz->fz_result.fb_data, fz->fz_expected.fb_data, fz->fz_result.fb_len) != 0))
        fuzz_fail("the echo is not the uppercase of the input");

    evbuffer_free(fz->fz_in);
    evbuffer_free(fz->fz_out);
    evbuffer_free(fz->fz_side);
    for (size_t i = 0; i < fz->fz_nshared; i++) {
        struct fuzz_shared *sh = &fz->fz_shared[i];

        if (evbuffer_get_length(sh->fs_buf) != sh->fs_len ||
            (sh->fs_len > 0 &&
             memcmp(evbuffer_pullup(sh->fs_buf, -1), sh->fs_orig, sh->fs_len) != 0))
            fuzz_fail("a buffer sharing chains through evbuffer_add_buffer_reference changed");
        evbuffer_free(sh->fs_buf);
        free(sh->fs_orig);
    }
    if (fuzz_refs_live != 0)
        fuzz_fail("evbuffer_add_reference memory was never given back");
    free(fz->fz_pending.fb_data);
    free(fz->fz_expected.fb_data);
    free(fz->fz_result.fb_data);
    free(fz);
    return 0;
}
