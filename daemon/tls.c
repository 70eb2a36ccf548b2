/* tls.c — the certificate tls tunnels are served with.
 *
 * The monitors terminate TLS for `{"port":N,"tls":true}` (monitor.c, with
 * GnuTLS); this file gives them a certificate and key.  An administrator's
 * own ("tls": {"certificate": PATH, "key": PATH} in the config) is only
 * checked: both load and belong together, or the daemon does not start.
 * Without one, the daemon makes its own at the first start and keeps it
 * in STATE/tls: an ECDSA P-256 key (key.pem, mode 0600) and a self-signed
 * certificate (cert.pem) for localhost, 127.0.0.1, the tunnel address and
 * the host's name, valid for ten years.  It is made again when the tunnel
 * address is no longer in it or it ends within 30 days.  Clients trust it
 * by its text or fingerprint, both in GET /v1/info. */
#include "sandboxd.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/crypto.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CERT_DAYS  3650
#define RENEW_DAYS 30

static int gerr(const char *what, int r)
{
    sbxd_log(NULL, "tls: %s: %s", what, gnutls_strerror(r));
    return -EINVAL;
}

static int read_datum(const char *path, gnutls_datum_t *out)
{
    int r = gnutls_load_file(path, out);

    return r < 0 ? gerr(path, r) : 0;
}

/* Adds an IPv4 address as a subjectAltName. */
static int san_ip(gnutls_x509_crt_t crt, const char *ip)
{
    struct in_addr a;

    if (inet_pton(AF_INET, ip, &a) != 1)
        return 0;
    return gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, &a, sizeof(a),
                                                GNUTLS_FSAN_APPEND);
}

/* A new key and a self-signed certificate for it, written to d->tls_*. */
static int make_certificate(struct sbxd *d)
{
    gnutls_x509_privkey_t key = NULL;
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t key_pem = {0}, crt_pem = {0};
    unsigned char serial[16], key_id[64];
    size_t key_id_len = sizeof(key_id);
    char host[256] = "", cn[320];
    time_t now = time(NULL);
    int r;

    if (gethostname(host, sizeof(host) - 1) < 0)
        host[0] = '\0';
    snprintf(cn, sizeof(cn), "sandboxd on %s", host[0] ? host : "localhost");
    if ((r = gnutls_x509_privkey_init(&key)) < 0 ||
        (r = gnutls_x509_privkey_generate(
             key, GNUTLS_PK_ECDSA, GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0)) < 0 ||
        (r = gnutls_x509_crt_init(&crt)) < 0 || (r = gnutls_x509_crt_set_version(crt, 3)) < 0 ||
        (r = gnutls_rnd(GNUTLS_RND_NONCE, serial, sizeof(serial))) < 0)
        goto fail;
    serial[0] &= 0x7f; /* a positive number */
    if ((r = gnutls_x509_crt_set_serial(crt, serial, sizeof(serial))) < 0 ||
        (r = gnutls_x509_crt_set_activation_time(crt, now - 3600)) < 0 ||
        (r = gnutls_x509_crt_set_expiration_time(crt, now + (time_t)CERT_DAYS * 86400)) < 0 ||
        (r = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_ORGANIZATION_NAME, 0, "sandboxd",
                                           8)) < 0 ||
        (r = gnutls_x509_crt_set_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, cn,
                                           (unsigned)strlen(cn))) < 0 ||
        (r = gnutls_x509_crt_set_key(crt, key)) < 0 ||
        (r = gnutls_x509_crt_set_basic_constraints(crt, 0, -1)) < 0 ||
        (r = gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE)) < 0 ||
        (r = gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0)) < 0 ||
        (r = gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_DNSNAME, "localhost", 9,
                                                  GNUTLS_FSAN_APPEND)) < 0 ||
        (host[0] &&
         (r = gnutls_x509_crt_set_subject_alt_name(
              crt, GNUTLS_SAN_DNSNAME, host, (unsigned)strlen(host), GNUTLS_FSAN_APPEND)) < 0) ||
        (r = san_ip(crt, "127.0.0.1")) < 0 ||
        (strcmp(d->cfg.tunnel_bind, "127.0.0.1") && (r = san_ip(crt, d->cfg.tunnel_bind)) < 0) ||
        (r = gnutls_x509_crt_get_key_id(crt, 0, key_id, &key_id_len)) < 0 ||
        (r = gnutls_x509_crt_set_subject_key_id(crt, key_id, key_id_len)) < 0 ||
        (r = gnutls_x509_crt_sign2(crt, crt, key, GNUTLS_DIG_SHA256, 0)) < 0 ||
        (r = gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &key_pem)) < 0 ||
        (r = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &crt_pem)) < 0)
        goto fail;
    /* The key first: a certificate is never there without its key. */
    if ((r = sbxd_write_file(d->tls_key, key_pem.data, key_pem.size, 0600, true)) < 0 ||
        (r = sbxd_write_file(d->tls_cert, crt_pem.data, crt_pem.size, 0644, true)) < 0) {
        sbxd_log(NULL, "tls: write %s: %s", d->tls_cert, strerror(-r));
        r = -EIO;
    } else {
        sbxd_log(NULL, "tls: made a self-signed certificate for tls tunnels: %s", d->tls_cert);
    }
    goto out;
fail:
    r = gerr("make a certificate", r);
out:
    gnutls_free(key_pem.data);
    gnutls_free(crt_pem.data);
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (key)
        gnutls_x509_privkey_deinit(key);
    return r < 0 ? r : 0;
}

/* Whether the certificate made earlier still serves: the tunnel address in
 * it, and not about to expire. */
static bool made_one_fits(struct sbxd *d, gnutls_x509_crt_t crt)
{
    struct in_addr a;

    if (gnutls_x509_crt_get_expiration_time(crt) < time(NULL) + (time_t)RENEW_DAYS * 86400)
        return false;
    if (inet_pton(AF_INET, d->cfg.tunnel_bind, &a) == 1 && a.s_addr != htonl(INADDR_ANY) &&
        !gnutls_x509_crt_check_ip(crt, (const unsigned char *)&a, sizeof(a), 0))
        return false;
    return true;
}

/* Loads d->tls_cert and d->tls_key: they load, belong together; fills the
 * text and fingerprint.  *fits: false when a certificate made here should
 * be made again. */
static int load(struct sbxd *d, bool *fits)
{
    gnutls_certificate_credentials_t cred = NULL;
    gnutls_x509_crt_t crt = NULL;
    gnutls_datum_t pem = {0};
    unsigned char digest[32];
    size_t digest_len = sizeof(digest);
    int r;

    if ((r = read_datum(d->tls_cert, &pem)) < 0)
        return r;
    if ((r = gnutls_certificate_allocate_credentials(&cred)) < 0 ||
        (r = gnutls_certificate_set_x509_key_file(cred, d->tls_cert, d->tls_key,
                                                  GNUTLS_X509_FMT_PEM)) < 0 ||
        (r = gnutls_x509_crt_init(&crt)) < 0 ||
        (r = gnutls_x509_crt_import(crt, &pem, GNUTLS_X509_FMT_PEM)) < 0 ||
        (r = gnutls_x509_crt_get_fingerprint(crt, GNUTLS_DIG_SHA256, digest, &digest_len)) < 0) {
        r = gerr(d->tls_cert, r);
        goto out;
    }
    if (fits)
        *fits = made_one_fits(d, crt);
    d->tls_sha256[0] = '\0';
    for (size_t i = 0, o = 0; i < digest_len; i++)
        o += (size_t)snprintf(d->tls_sha256 + o, sizeof(d->tls_sha256) - o, "%s%02X", i ? ":" : "",
                              digest[i]);
    free(d->tls_cert_pem);
    d->tls_cert_pem = strndup((const char *)pem.data, pem.size);
    r = d->tls_cert_pem ? 0 : -ENOMEM;
out:
    if (crt)
        gnutls_x509_crt_deinit(crt);
    if (cred)
        gnutls_certificate_free_credentials(cred);
    gnutls_free(pem.data);
    return r;
}

int sbxd_tls_init(struct sbxd *d)
{
    char dir[PATH_MAX];
    bool fits = false;
    int r;

    if (d->cfg.tls_cert) {
        snprintf(d->tls_cert, sizeof(d->tls_cert), "%s", d->cfg.tls_cert);
        snprintf(d->tls_key, sizeof(d->tls_key), "%s", d->cfg.tls_key);
        return load(d, NULL);
    }
    snprintf(dir, sizeof(dir), "%s/tls", d->cfg.state_dir);
    if ((r = sbxd_mkdir_p(dir, 0700)) < 0) {
        sbxd_log(NULL, "tls: mkdir %s: %s", dir, strerror(-r));
        return r;
    }
    snprintf(d->tls_cert, sizeof(d->tls_cert), "%s/cert.pem", dir);
    snprintf(d->tls_key, sizeof(d->tls_key), "%s/key.pem", dir);
    if (access(d->tls_cert, F_OK) == 0 && access(d->tls_key, F_OK) == 0 && load(d, &fits) == 0 &&
        fits)
        return 0;
    if ((r = make_certificate(d)) < 0)
        return r;
    return load(d, NULL);
}

void sbxd_tls_free(struct sbxd *d)
{
    free(d->tls_cert_pem);
    d->tls_cert_pem = NULL;
}
