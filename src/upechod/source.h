/* source.h: stream connections counted per client source, for max_connections_per_source. */
#ifndef UPECHOD_SOURCE_H
#define UPECHOD_SOURCE_H

#include <stddef.h>
#include <sys/socket.h>

struct source;
struct source_table;

struct source_table *source_table_new(void);
void source_table_free(struct source_table *t);
int source_acquire(struct source_table *t, const struct sockaddr *sa, size_t limit,
                   struct source **out);
void source_release(struct source_table *t, struct source *s);
size_t source_count(const struct source *s);

#endif
