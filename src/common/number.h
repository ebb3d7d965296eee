/* number.h: whole-string unsigned numbers, as config values and systemd's variables hold them. */
#ifndef UPECHOD_NUMBER_H
#define UPECHOD_NUMBER_H

int number_parse(const char *s, int base, unsigned long long *out);

#endif
