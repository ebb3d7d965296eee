/* config-keys.c: print every key the configuration parser knows, for the man page test. */
#include <stdio.h>

#include "config.h"

/* One line per key: "section<TAB>key<TAB>default". */
int
main(void)
{
    const char *section, *name, *def;

    for (size_t i = 0; config_key(i, &section, &name, &def) == 0; i++)
        printf("%s\t%s\t%s\n", section, name, def);
    return fflush(stdout) == 0 ? 0 : 1;
}
