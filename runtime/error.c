/* error.c — the runtime's error reports: an errno plus a message that names
 * the path or value involved, for the caller to log once with its context. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

int sbx__error(sbx_error *err, int errnum, const char *fmt, ...)
{
    if (errnum <= 0)
        errnum = EIO;
    if (err) {
        va_list ap;
        char what[384];

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        err->code = errnum;
        snprintf(err->message, sizeof(err->message), "%s: %s", what, strerror(errnum));
    }
    return -errnum;
}
