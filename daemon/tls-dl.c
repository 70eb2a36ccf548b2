/* tls-dl.c — see tls-dl.h. */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>

#include <gnutls/gnutls.h> /* the real declarations, for __typeof__ */

/* The struct's layout, without tls-dl.h's name macros. */
#define TLS_DL_NO_MACROS
#include "tls-dl.h"

struct tls_dl tls_dl;

int tls_dl_load(char *why, size_t why_len)
{
    static bool loaded;
    void *h;

    if (loaded)
        return 0;
    /* The soname this was built against first (GNUTLS_VERSION_NUMBER's
     * library), then whatever the linker's name finds. */
    h = dlopen("libgnutls.so.30", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        h = dlopen("libgnutls.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(why, why_len, "tls tunnels: load GnuTLS: %s", dlerror());
        return -1;
    }
#define TLS_DL_SYM(name)                                                                           \
    if (!(tls_dl.p_##name = (__typeof__(name) *)dlsym(h, #name))) {                                \
        snprintf(why, why_len, "tls tunnels: GnuTLS has no %s", #name);                            \
        return -1;                                                                                 \
    }
    TLS_DL_FUNCS(TLS_DL_SYM)
#undef TLS_DL_SYM
    loaded = true;
    return 0;
}
