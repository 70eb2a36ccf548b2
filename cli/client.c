/* client.c — sbx's side of the REST API: libcurl on the daemon's unix socket
 * (or TCP with a bearer token), JSON with jansson, and every failure turned
 * into one line that names the daemon or quotes its message. */
#include "cli.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

/* A request other than a stream must get its answer within this: the
 * daemon's longest is terminate with wait (60 s) and a 64 MiB file. */
#define CALL_TIMEOUT_S    150L
#define CONNECT_TIMEOUT_S 10L

struct cli_client {
    char *unix_path; /* NULL for TCP */
    char *base_url;  /* "http://localhost" on a unix socket */
    char *name;      /* for messages */
    char *auth;      /* "Authorization: Bearer ..." or NULL */
    CURL *easy;      /* for cli_call*: keeps its connection between calls */
};

/* ---- errors ---- */

static int error_vset(struct cli_error *err, long status, const char *fmt, va_list ap)
{
    char *msg = NULL;

    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    free(err->message);
    err->message = msg;
    err->status = status;
    err->code[0] = '\0';
    return -EIO;
}

int cli_error_set(struct cli_error *err, long status, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    error_vset(err, status, fmt, ap);
    va_end(ap);
    return -EIO;
}

int cli_error_errno(struct cli_error *err, int errnum, const char *fmt, ...)
{
    va_list ap;
    _cleanup_free_ char *what = NULL;

    va_start(ap, fmt);
    if (vasprintf(&what, fmt, ap) < 0)
        what = NULL;
    va_end(ap);
    cli_error_set(err, 0, "%s: %s", what ? what : "?", strerror(errnum));
    return -errnum;
}

void cli_error_free(struct cli_error *err)
{
    free(err->message);
    err->message = NULL;
}

/* Prints s with control characters as '?': whatever a daemon or a path
 * holds, the message stays one line. */
static void print_one_line(const char *s)
{
    for (; *s; s++)
        fputc((unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s, stderr);
}

void cli_error_print(const struct cli_error *err)
{
    fputs("sbx: ", stderr);
    print_one_line(err->message ? err->message : "out of memory");
    fputc('\n', stderr);
}

int cli_fail(struct cli_error *err)
{
    cli_error_print(err);
    cli_error_free(err);
    return CLI_EXIT_FAILURE;
}

void cli_warn(const char *fmt, ...)
{
    va_list ap;
    _cleanup_free_ char *msg = NULL;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    fputs("sbx: ", stderr);
    print_one_line(msg ? msg : "out of memory");
    /* Raw mode may be on: go back to the start of the line too. */
    fputs(isatty(STDERR_FILENO) ? "\r\n" : "\n", stderr);
}

char *cli_strdupf(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0) {
        fputs("sbx: out of memory\n", stderr);
        exit(CLI_EXIT_FAILURE);
    }
    va_end(ap);
    return s;
}

/* ---- buffers ---- */

int cli_buf_append(struct cli_buf *b, const void *data, size_t len)
{
    if (b->cap - b->len < len + 1) {
        size_t cap = b->cap ? b->cap : 256;
        char *nd;
        while (cap - b->len < len + 1) {
            if (cap > SIZE_MAX / 2)
                return -ENOMEM;
            cap *= 2;
        }
        nd = realloc(b->data, cap);
        if (!nd)
            return -ENOMEM;
        b->data = nd;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

void cli_buf_free(struct cli_buf *b)
{
    free(b->data);
    *b = (struct cli_buf){0};
}

/* ---- the client ---- */

int cli_client_new(const char *host, const char *token, struct cli_client **ret,
                   struct cli_error *err)
{
    struct cli_client *c = calloc(1, sizeof(*c));
    bool is_unix = false;

    if (!c)
        return cli_error_errno(err, ENOMEM, "client");
    if (!host || !*host)
        host = CLI_DEFAULT_HOST;
    if (!strncmp(host, "tcp://", 6) || !strncmp(host, "http://", 7)) {
        const char *hp = host + (host[0] == 't' ? 6 : 7);
        size_t n = strcspn(hp, "/");
        if (n == 0 || hp[n] != '\0' || !strchr(hp, ':')) {
            free(c);
            return cli_error_set(err, 0, "host `%s`: expected tcp://HOST:PORT", host);
        }
        c->base_url = cli_strdupf("http://%s", hp);
    } else {
        const char *path = !strncmp(host, "unix://", 7) ? host + 7
                           : !strncmp(host, "unix:", 5) ? host + 5
                                                        : host;
        if (!*path || strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            free(c);
            return cli_error_set(err, 0, "host `%s`: not a unix socket path (or tcp://HOST:PORT)",
                                 host);
        }
        is_unix = true;
        c->unix_path = strdup(path);
        c->base_url = strdup("http://localhost");
    }
    c->name = strdup(host);
    if (token && *token)
        c->auth = cli_strdupf("Authorization: Bearer %s", token);
    if (!c->base_url || !c->name || (is_unix && !c->unix_path)) {
        cli_client_free(c);
        return cli_error_errno(err, ENOMEM, "client");
    }
    *ret = c;
    return 0;
}

void cli_client_free(struct cli_client *c)
{
    if (!c)
        return;
    if (c->easy)
        curl_easy_cleanup(c->easy);
    free(c->unix_path);
    free(c->base_url);
    free(c->name);
    free(c->auth);
    free(c);
}

const char *cli_client_name(const struct cli_client *c)
{
    return c->name;
}

char *cli_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *copy = e ? strdup(e) : NULL;

    curl_free(e);
    return copy;
}

/* Sets up h for method and path on this daemon. */
static int setup_handle(struct cli_client *c, CURL *h, const char *method, const char *path,
                        struct curl_slist **headers)
{
    _cleanup_free_ char *url = NULL;
    struct curl_slist *l = NULL;

    if (asprintf(&url, "%s%s", c->base_url, path) < 0)
        return -ENOMEM;
    *headers = NULL;
    /* A POST's body goes at once, without waiting for "100 Continue". */
    l = curl_slist_append(l, "Expect:");
    if (l && c->auth)
        l = curl_slist_append(l, c->auth);
    if (!l)
        return -ENOMEM;
    *headers = l;
    curl_easy_setopt(h, CURLOPT_URL, url);
    if (c->unix_path)
        curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, c->unix_path);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, strcmp(method, "GET") ? method : NULL);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, l);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    /* An empty POST/PUT (an action, or stdin's EOF) still sends a body of 0. */
    if (!strcmp(method, "POST") || !strcmp(method, "PUT")) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    return 0;
}

CURL *cli_client_handle(struct cli_client *c, const char *method, const char *path,
                        struct curl_slist **headers)
{
    CURL *h = curl_easy_init();

    *headers = NULL;
    if (h && setup_handle(c, h, method, path, headers) < 0) {
        curl_slist_free_all(*headers);
        *headers = NULL;
        curl_easy_cleanup(h);
        h = NULL;
    }
    return h;
}

bool cli_client_retryable(CURLcode rc)
{
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
           rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE;
}

/* Why a unix socket cannot be connected to: curl only says it could not. */
static int unix_connect_errno(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), e = 0;

    if (fd < 0)
        return errno;
    memcpy(sa.sun_path, path, strlen(path));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        e = errno;
    close(fd);
    return e;
}

int cli_client_fail(struct cli_client *c, CURLcode rc, long status, const struct cli_buf *body,
                    struct cli_error *err)
{
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST) {
        int e = c->unix_path ? unix_connect_errno(c->unix_path) : 0;
        cli_error_set(err, 0,
                      "cannot connect to sandboxd at %s: %s (is it running? --host or "
                      "SANDBOXD_HOST name another)",
                      c->name, e ? strerror(e) : curl_easy_strerror(rc));
        return -ECONNREFUSED;
    }
    if (rc == CURLE_OPERATION_TIMEDOUT)
        return cli_error_set(err, 0, "sandboxd at %s did not answer in time", c->name);
    if (rc != CURLE_OK)
        return cli_error_set(err, 0, "lost the connection to sandboxd at %s: %s", c->name,
                             curl_easy_strerror(rc));
    if (status >= 200 && status < 300)
        return 0;
    {
        _cleanup_json_ json_t *j = body->len ? json_loadb(body->data, body->len, 0, NULL) : NULL;
        json_t *e = json_object_get(j, "error");
        const char *msg = cli_str(e, "message"), *code = cli_str(e, "code");

        if (msg)
            cli_error_set(err, status, "%s", msg);
        else
            cli_error_set(err, status, "sandboxd answered HTTP %ld%s%.200s", status,
                          body->len ? ": " : "", body->len ? body->data : "");
        if (status == 401 && !c->auth)
            cli_error_set(err, status, "%s (set SANDBOXD_TOKEN)", msg ? msg : "unauthenticated");
        if (code)
            snprintf(err->code, sizeof(err->code), "%s", code);
    }
    return -EIO;
}

/* ---- one request ---- */

static size_t collect(char *p, size_t size, size_t n, void *userdata)
{
    return cli_buf_append(userdata, p, size * n) < 0 ? 0 : size * n;
}

struct stream_ctx {
    CURL *h;
    struct cli_buf err_body;
    int (*on_data)(const char *data, size_t len, void *userdata);
    void *userdata;
    int r;
};

static size_t stream_data(char *p, size_t size, size_t n, void *userdata)
{
    struct stream_ctx *s = userdata;
    long status = 0;

    curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300)
        return collect(p, size, n, &s->err_body);
    s->r = s->on_data(p, size * n, s->userdata);
    return s->r < 0 ? 0 : size * n;
}

/* The shared handle, reset and set up for this request. */
static CURL *call_handle(struct cli_client *c, const char *method, const char *path,
                         struct curl_slist **headers)
{
    if (!c->easy)
        c->easy = curl_easy_init();
    else
        curl_easy_reset(c->easy);
    if (!c->easy || setup_handle(c, c->easy, method, path, headers) < 0) {
        curl_slist_free_all(*headers);
        *headers = NULL;
        return NULL;
    }
    return c->easy;
}

static int perform(struct cli_client *c, const char *method, const char *path, const void *body,
                   size_t body_len, struct cli_buf *ret, struct stream_ctx *stream,
                   struct cli_error *err)
{
    struct curl_slist *headers = NULL;
    struct cli_buf answer = {0};
    CURL *h = call_handle(c, method, path, &headers);
    CURLcode rc;
    long status = 0;
    int r;

    if (!h)
        return cli_error_errno(err, ENOMEM, "%s %s", method, path);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (stream) {
        stream->h = h;
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, stream_data);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, stream);
    } else {
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, CALL_TIMEOUT_S);
    }
    rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    if (stream && stream->r < 0) {
        cli_buf_free(&answer);
        return stream->r;
    }
    r = cli_client_fail(c, rc, status, stream ? &stream->err_body : &answer, err);
    if (r < 0 || !ret)
        cli_buf_free(&answer);
    else
        *ret = answer;
    return r;
}

int cli_call_raw(struct cli_client *c, const char *method, const char *path, const void *body,
                 size_t body_len, struct cli_buf *ret, struct cli_error *err)
{
    return perform(c, method, path, body, body_len, ret, NULL, err);
}

int cli_call(struct cli_client *c, const char *method, const char *path, json_t *body, json_t **ret,
             struct cli_error *err)
{
    _cleanup_free_ char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct cli_buf answer = {0};
    json_error_t jerr;
    int r;

    if (body && !text)
        return cli_error_errno(err, ENOMEM, "%s %s", method, path);
    r = perform(c, method, path, text, text ? strlen(text) : 0, &answer, NULL, err);
    if (r < 0)
        return r;
    if (ret) {
        *ret = NULL;
        if (answer.len) {
            *ret = json_loadb(answer.data, answer.len, JSON_DECODE_ANY, &jerr);
            if (!*ret)
                r = cli_error_set(err, 0, "sandboxd's answer to %s %s is not JSON: %s", method,
                                  path, jerr.text);
        }
    }
    cli_buf_free(&answer);
    return r;
}

int cli_call_stream(struct cli_client *c, const char *path,
                    int (*on_data)(const char *data, size_t len, void *userdata), void *userdata,
                    struct cli_error *err)
{
    struct stream_ctx s = {.on_data = on_data, .userdata = userdata};
    int r = perform(c, "GET", path, NULL, 0, NULL, &s, err);

    cli_buf_free(&s.err_body);
    return r;
}

const char *cli_str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}
