/* tls-dl.h — GnuTLS for the monitor, loaded when a tunnel first needs it.
 *
 * A monitor is a fork of the zygote, and a sandbox's init a fork of its
 * monitor: linked in, GnuTLS and its eight dependencies would be mapped in
 * two processes per sandbox (45 of 112 mappings; page tables, fork time)
 * for the few sandboxes with a tls tunnel.  The monitor calls the functions
 * by their names; these macros route them through pointers that
 * tls_dl_load() fills with dlopen()/dlsym(). */
#pragma once

#include <gnutls/gnutls.h>

#define TLS_DL_FUNCS(X)                                                                            \
    X(gnutls_init)                                                                                 \
    X(gnutls_deinit)                                                                               \
    X(gnutls_record_recv)                                                                          \
    X(gnutls_record_send)                                                                          \
    X(gnutls_record_check_pending)                                                                 \
    X(gnutls_record_get_direction)                                                                 \
    X(gnutls_bye)                                                                                  \
    X(gnutls_handshake)                                                                            \
    X(gnutls_error_is_fatal)                                                                       \
    X(gnutls_credentials_set)                                                                      \
    X(gnutls_set_default_priority)                                                                 \
    X(gnutls_certificate_server_set_request)                                                       \
    X(gnutls_transport_set_int2)                                                                   \
    X(gnutls_certificate_allocate_credentials)                                                     \
    X(gnutls_certificate_set_x509_key_file)                                                        \
    X(gnutls_certificate_free_credentials)                                                         \
    X(gnutls_strerror)

#define TLS_DL_POINTER(name) __typeof__(name) *p_##name;
struct tls_dl {
    TLS_DL_FUNCS(TLS_DL_POINTER)
};
#undef TLS_DL_POINTER
extern struct tls_dl tls_dl;

/* Loads the library once: 0, or -1 with why filled. */
int tls_dl_load(char *why, size_t why_len);

#ifndef TLS_DL_NO_MACROS
#define gnutls_init                             (*tls_dl.p_gnutls_init)
#define gnutls_deinit                           (*tls_dl.p_gnutls_deinit)
#define gnutls_record_recv                      (*tls_dl.p_gnutls_record_recv)
#define gnutls_record_send                      (*tls_dl.p_gnutls_record_send)
#define gnutls_record_check_pending             (*tls_dl.p_gnutls_record_check_pending)
#define gnutls_record_get_direction             (*tls_dl.p_gnutls_record_get_direction)
#define gnutls_bye                              (*tls_dl.p_gnutls_bye)
#define gnutls_handshake                        (*tls_dl.p_gnutls_handshake)
#define gnutls_error_is_fatal                   (*tls_dl.p_gnutls_error_is_fatal)
#define gnutls_credentials_set                  (*tls_dl.p_gnutls_credentials_set)
#define gnutls_set_default_priority             (*tls_dl.p_gnutls_set_default_priority)
#define gnutls_certificate_server_set_request   (*tls_dl.p_gnutls_certificate_server_set_request)
#define gnutls_transport_set_int2               (*tls_dl.p_gnutls_transport_set_int2)
#define gnutls_certificate_allocate_credentials (*tls_dl.p_gnutls_certificate_allocate_credentials)
#define gnutls_certificate_set_x509_key_file    (*tls_dl.p_gnutls_certificate_set_x509_key_file)
#define gnutls_certificate_free_credentials     (*tls_dl.p_gnutls_certificate_free_credentials)
#define gnutls_strerror                         (*tls_dl.p_gnutls_strerror)
#endif
