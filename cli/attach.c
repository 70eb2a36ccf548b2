/* attach.c — a process's streams, live, as if it ran here.
 *
 * One curl multi handle carries, concurrently:
 *   - GET .../stdout and .../stderr (?follow=1), written to our fds 1 and 2;
 *     a broken connection is resumed with ?offset= (the daemon may be
 *     restarting: it keeps every byte), for up to RECONNECT_S;
 *   - POST .../stdin: the daemon takes a request's whole body before it
 *     forwards it (API.md, daemon/http.h), so a long-lived upload would
 *     deliver nothing until it ended.  Local stdin is instead sent as one
 *     POST per batch on a kept-alive connection: whatever was read while the
 *     previous POST was in flight goes in the next (a keystroke alone when
 *     typing, up to STDIN_POST_MAX when piping).  A batch is at most one
 *     monitor message, so a 429 (the process has not read what it has)
 *     refuses it whole and it is sent again after a pause, while sbx stops
 *     reading its own stdin: back-pressure reaches the local writer;
 *   - window size changes (POST .../resize), forwarded signals, terminate;
 *   - the wait for the returncode, once the output has ended.
 * Signals arrive through term.c's self-pipe, polled beside the sockets. */
#include "cli.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* The daemon hands a stdin body to the monitor in 512 KiB messages, each
 * accepted or refused whole (daemon/api.c): never send more per POST. */
#define STDIN_POST_MAX (512 * 1024)
#define STDIN_BUF      (2 * STDIN_POST_MAX)
#define WAIT_POLL_S    50
#define RECONNECT_S    5.0
#define RETRY_DELAY_S  0.2

enum xfer_kind { X_STDOUT, X_STDERR, X_STDIN, X_WAIT, X_CONTROL };

struct session;

struct xfer {
    struct session *s;
    enum xfer_kind kind;
    CURL *h;
    struct curl_slist *headers;
    bool busy;           /* in the multi handle */
    struct cli_buf body; /* a JSON answer, or an error's body */
    double retry_at;     /* when to try again after a failure; 0: not waiting */
    double failing_since;
    /* output streams */
    int fd;
    uint64_t offset; /* bytes written out so far: where to resume */
    bool done;
};

struct session {
    struct cli_client *c;
    const struct cli_attach *a;
    CURLM *multi;
    char *base; /* /v1/sandboxes/ID or /v1/sandboxes/ID/processes/PID */
    struct xfer out[2], in, wait, control;
    bool failed;
    struct cli_error *err;
    /* stdin */
    char *inbuf;
    size_t in_len, in_sent;
    bool in_eof, in_sent_eof, in_eof_done, in_closed;
    unsigned in_backoff_ms;
    /* control */
    bool resize_pending, terminate_pending;
    int signal_pending;
    int signals_seen, ended_by_signal;
    bool output_closed;
    /* the end */
    bool has_returncode, finished;
    int returncode;
    json_t *record;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct session *s, const char *fmt, ...)
{
    va_list ap;
    _cleanup_free_ char *msg = NULL;

    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (!s->failed)
        cli_error_set(s->err, 0, "%s", msg ? msg : "out of memory");
    s->failed = true;
    return -EIO;
}

/* ---- transfers ---- */

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
    struct xfer *x = userdata;

    return cli_buf_append(&x->body, p, size * n) < 0 ? 0 : size * n;
}

static size_t on_stream_data(char *p, size_t size, size_t n, void *userdata)
{
    struct xfer *x = userdata;
    size_t len = size * n;
    long status = 0;
    int r;

    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return on_body(p, size, n, userdata);
    r = cli_write_all(x->fd, p, len);
    if (r < 0) {
        if (r == -EPIPE)
            x->s->output_closed = true;
        else
            fail(x->s, "write %s: %s", x->fd == STDOUT_FILENO ? "stdout" : "stderr", strerror(-r));
        return 0;
    }
    x->offset += len;
    x->failing_since = 0;
    return len;
}

static size_t on_stream_header(char *p, size_t size, size_t n, void *userdata)
{
    static const char name[] = "X-Sandboxd-Dropped:";
    struct xfer *x = userdata;
    size_t len = size * n;

    if (len > sizeof(name) - 1 && !strncasecmp(p, name, sizeof(name) - 1)) {
        unsigned long long dropped = strtoull(p + sizeof(name) - 1, NULL, 10);
        if (dropped) {
            cli_warn("%llu bytes of %s before these are gone (the daemon keeps a bounded amount)",
                     dropped, x->kind == X_STDOUT ? "stdout" : "stderr");
            x->offset += dropped;
        }
    }
    return len;
}

/* Starts a request; body (may be NULL) is copied. */
static int xfer_start(struct session *s, struct xfer *x, const char *method, const char *path,
                      const void *body, size_t body_len, bool copy_body)
{
    x->h = cli_client_handle(s->c, method, path, &x->headers);
    if (!x->h)
        return fail(s, "out of memory");
    cli_buf_free(&x->body);
    curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
    if (x->kind == X_STDOUT || x->kind == X_STDERR) {
        curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_stream_data);
        curl_easy_setopt(x->h, CURLOPT_HEADERFUNCTION, on_stream_header);
        curl_easy_setopt(x->h, CURLOPT_HEADERDATA, x);
    } else {
        curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_body);
    }
    curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
    /* Streams may be quiet for as long as their process is; the rest
     * answers within its long poll. */
    if (x->kind == X_WAIT)
        curl_easy_setopt(x->h, CURLOPT_TIMEOUT, (long)WAIT_POLL_S + 30);
    else if (x->kind != X_STDOUT && x->kind != X_STDERR)
        curl_easy_setopt(x->h, CURLOPT_TIMEOUT, 120L);
    if (body) {
        curl_easy_setopt(x->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        if (copy_body)
            curl_easy_setopt(x->h, CURLOPT_COPYPOSTFIELDS, body);
        else
            curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, body);
    }
    if (curl_multi_add_handle(s->multi, x->h) != CURLM_OK) {
        curl_easy_cleanup(x->h);
        x->h = NULL;
        return fail(s, "cannot start a transfer");
    }
    x->busy = true;
    x->retry_at = 0;
    return 0;
}

static void xfer_end(struct session *s, struct xfer *x)
{
    if (x->h) {
        curl_multi_remove_handle(s->multi, x->h);
        curl_easy_cleanup(x->h);
    }
    curl_slist_free_all(x->headers);
    x->h = NULL;
    x->headers = NULL;
    x->busy = false;
}

/* After a transport failure: try again soon, or give up once the daemon has
 * been unreachable for RECONNECT_S.  Returns false when given up. */
static bool schedule_retry(struct session *s, struct xfer *x, CURLcode rc)
{
    double now = now_s();

    if (!cli_client_retryable(rc))
        return false;
    if (!x->failing_since)
        x->failing_since = now;
    if (now - x->failing_since > RECONNECT_S)
        return false;
    x->retry_at = now + RETRY_DELAY_S;
    (void)s;
    return true;
}

/* The failure of x as the session's error. */
static void fail_xfer(struct session *s, struct xfer *x, CURLcode rc, long status)
{
    struct cli_error e = {0};

    if (s->failed)
        return;
    cli_client_fail(s->c, rc, status, &x->body, &e);
    if (!e.message) {
        fail(s, "out of memory");
        return;
    }
    cli_error_free(s->err);
    *s->err = e;
    s->failed = true;
}

/* ---- output ---- */

static void stream_start(struct session *s, struct xfer *x)
{
    _cleanup_free_ char *path =
        cli_strdupf("%s/%s?offset=%llu%s", s->base, x->kind == X_STDOUT ? "stdout" : "stderr",
                    (unsigned long long)x->offset, s->a->follow ? "&follow=1" : "");

    xfer_start(s, x, "GET", path, NULL, 0, false);
}

static void stream_done(struct session *s, struct xfer *x, CURLcode rc, long status)
{
    if (rc == CURLE_WRITE_ERROR && (s->output_closed || s->failed))
        return;
    if (rc == CURLE_OK && status == 200) {
        x->done = true;
        return;
    }
    if (rc == CURLE_OK || !schedule_retry(s, x, rc))
        fail_xfer(s, x, rc, status);
}

/* ---- stdin ---- */

static void stdin_read(struct session *s)
{
    ssize_t n = read(STDIN_FILENO, s->inbuf + s->in_len, STDIN_BUF - s->in_len);

    if (n > 0)
        s->in_len += (size_t)n;
    else if (n == 0 || (errno != EINTR && errno != EAGAIN))
        s->in_eof = true; /* EOF, or EIO: the terminal is gone */
}

static bool stdin_wanted(const struct session *s)
{
    return s->a->forward_stdin && !s->in_eof && !s->in_closed && s->in_len < STDIN_BUF;
}

static void stdin_send(struct session *s)
{
    _cleanup_free_ char *path = NULL;
    size_t n;

    if (s->in.busy || s->in_closed || s->in_eof_done || (s->in_len == 0 && !s->in_eof))
        return;
    if (s->in.retry_at && now_s() < s->in.retry_at)
        return;
    n = s->in_len < STDIN_POST_MAX ? s->in_len : STDIN_POST_MAX;
    s->in_sent = n;
    s->in_sent_eof = s->in_eof && n == s->in_len;
    path = cli_strdupf("%s/stdin%s", s->base, s->in_sent_eof ? "?eof=1" : "");
    /* inbuf's first n bytes stay as they are until the answer: reads only
     * append after in_len, and inbuf is never reallocated. */
    xfer_start(s, &s->in, "POST", path, n ? s->inbuf : "", n, false);
}

static void stdin_done(struct session *s, CURLcode rc, long status)
{
    struct xfer *x = &s->in;

    if (rc == CURLE_OK && status >= 200 && status < 300) {
        if (s->in_sent) /* (without -i there is no buffer, only the EOF) */
            memmove(s->inbuf, s->inbuf + s->in_sent, s->in_len - s->in_sent);
        s->in_len -= s->in_sent;
        s->in_eof_done = s->in_sent_eof;
        s->in_backoff_ms = 0;
        x->failing_since = 0;
        return;
    }
    if (rc == CURLE_OK && (status == 429 || status == 503)) {
        /* Its stdin is full (or its monitor is starting): the same bytes
         * again, a little later. */
        s->in_backoff_ms = s->in_backoff_ms ? s->in_backoff_ms * 2 : 10;
        if (s->in_backoff_ms > 250)
            s->in_backoff_ms = 250;
        x->retry_at = now_s() + s->in_backoff_ms / 1000.0;
        return;
    }
    if (rc == CURLE_OK && status == 409) {
        /* Its stdin is closed or it has ended: like a broken pipe. */
        s->in_closed = true;
        return;
    }
    if (rc != CURLE_OK && schedule_retry(s, x, rc)) {
        if (rc != CURLE_COULDNT_CONNECT)
            cli_warn("stdin: the connection broke while sending %zu bytes: sending them again "
                     "(they may arrive twice)",
                     s->in_sent);
        return;
    }
    {
        struct cli_error e = {0};
        cli_client_fail(s->c, rc, status, &x->body, &e);
        cli_warn("stdin is no longer forwarded: %s", e.message ? e.message : "out of memory");
        cli_error_free(&e);
        s->in_closed = true;
    }
}

/* ---- control: resize, signal, terminate ---- */

static void control_send(struct session *s)
{
    _cleanup_free_ char *path = NULL, *body = NULL;
    unsigned rows, cols;

    if (s->control.busy)
        return;
    if (s->terminate_pending) {
        s->terminate_pending = false;
        path = cli_strdupf("/v1/sandboxes/%s/terminate", s->a->sandbox_id);
        body = cli_strdupf("{}");
    } else if (s->signal_pending) {
        path = cli_strdupf("%s/signal", s->base);
        body = cli_strdupf("{\"signal\":%d}", s->signal_pending);
        s->signal_pending = 0;
    } else if (s->resize_pending) {
        s->resize_pending = false;
        if (!cli_term_size(&rows, &cols))
            return;
        path = cli_strdupf("%s/resize", s->base);
        body = cli_strdupf("{\"rows\":%u,\"cols\":%u}", rows, cols);
    } else {
        return;
    }
    xfer_start(s, &s->control, "POST", path, body, strlen(body), true);
}

static void control_done(struct session *s, CURLcode rc, long status)
{
    /* A resize or a signal that missed its process (it ended meanwhile)
     * changes nothing; the end is reported by the wait. */
    (void)s, (void)rc, (void)status;
}

/* ---- the returncode ---- */

static void wait_start(struct session *s)
{
    /* A process's wait answers {"returncode"}, the sandbox's its record. */
    _cleanup_free_ char *path = cli_strdupf("%s/wait?timeout_s=%d", s->base, WAIT_POLL_S);

    xfer_start(s, &s->wait, "GET", path, NULL, 0, false);
}

static void wait_done(struct session *s, CURLcode rc, long status)
{
    struct xfer *x = &s->wait;
    _cleanup_json_ json_t *j = NULL;
    json_t *rc_j;

    if (rc != CURLE_OK || status != 200) {
        if (rc == CURLE_OK || !schedule_retry(s, x, rc))
            fail_xfer(s, x, rc, status);
        return;
    }
    x->failing_since = 0;
    j = json_loadb(x->body.data ? x->body.data : "", x->body.len, 0, NULL);
    rc_j = json_object_get(j, "returncode");
    if (s->a->process_id) {
        /* {"returncode": null} until it ends: ask again. */
        if (json_is_integer(rc_j)) {
            s->finished = s->has_returncode = true;
            s->returncode = (int)json_integer_value(rc_j);
        }
        return;
    }
    if (j && !strcmp(cli_str(j, "state") ? cli_str(j, "state") : "", "finished")) {
        s->finished = true;
        s->has_returncode = json_is_integer(rc_j);
        s->returncode = (int)json_integer_value(rc_j);
        s->record = cli_steal_pointer(&j);
    }
}

/* ---- the loop ---- */

static void on_signal(struct session *s, int sig)
{
    const struct cli_attach *a = s->a;

    if (sig == SIGWINCH || sig == SIGCONT) {
        if (a->tty && a->process_id)
            s->resize_pending = true;
        return;
    }
    if (a->tty || a->on_signal == CLI_SIGNAL_DETACH || s->signals_seen++ > 0 ||
        !a->want_returncode) {
        s->ended_by_signal = sig;
        return;
    }
    if (a->on_signal == CLI_SIGNAL_FORWARD && a->process_id)
        s->signal_pending = sig;
    else
        s->terminate_pending = true;
}

static void transfer_done(struct session *s, CURL *h, CURLcode rc)
{
    struct xfer *x = NULL;
    long status = 0;

    curl_easy_getinfo(h, CURLINFO_PRIVATE, (char **)&x);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (!x)
        return;
    xfer_end(s, x);
    switch (x->kind) {
    case X_STDOUT:
    case X_STDERR:
        stream_done(s, x, rc, status);
        break;
    case X_STDIN:
        stdin_done(s, rc, status);
        break;
    case X_WAIT:
        wait_done(s, rc, status);
        break;
    case X_CONTROL:
        control_done(s, rc, status);
        break;
    }
}

static bool output_done(const struct session *s)
{
    return (!s->a->want_stdout || s->out[0].done) && (!s->a->want_stderr || s->out[1].done);
}

/* Restarts what waits for a retry whose time has come; returns the poll
 * timeout until the next one, in ms. */
static int run_timers(struct session *s)
{
    struct xfer *xs[] = {&s->out[0], &s->out[1], &s->wait, &s->in};
    double now = now_s(), next = now + 1.0;

    for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++) {
        struct xfer *x = xs[i];
        if (!x->retry_at || x->busy)
            continue;
        if (x->retry_at > now) {
            if (x->retry_at < next)
                next = x->retry_at;
            continue;
        }
        if (x == &s->in) {
            stdin_send(s); /* clears retry_at when it starts */
        } else {
            x->retry_at = 0;
            if (x == &s->wait)
                wait_start(s);
            else
                stream_start(s, x);
        }
    }
    return (int)((next - now) * 1000) + 1;
}

static int loop(struct session *s)
{
    const struct cli_attach *a = s->a;
    int running = 0;

    for (;;) {
        struct curl_waitfd fds[2];
        unsigned nfds = 0;
        int timeout, sig;
        CURLMsg *m;
        int left;

        if (s->failed)
            return -EIO;
        if (s->output_closed || s->ended_by_signal)
            return 0;
        if (output_done(s)) {
            if (!a->want_returncode || s->finished)
                return 0;
            if (!s->wait.busy && !s->wait.retry_at)
                wait_start(s);
        }
        if (a->forward_stdin || a->close_stdin)
            stdin_send(s);
        control_send(s);
        timeout = run_timers(s);

        fds[nfds++] = (struct curl_waitfd){.fd = cli_signals_fd(), .events = CURL_WAIT_POLLIN};
        if (stdin_wanted(s))
            fds[nfds++] = (struct curl_waitfd){.fd = STDIN_FILENO, .events = CURL_WAIT_POLLIN};
        if (curl_multi_poll(s->multi, fds, nfds, timeout, NULL) != CURLM_OK)
            return fail(s, "polling the connections failed");
        while ((sig = cli_signals_next()))
            on_signal(s, sig);
        if (nfds > 1 && fds[1].revents)
            stdin_read(s);
        if (curl_multi_perform(s->multi, &running) != CURLM_OK)
            return fail(s, "transfers failed");
        while ((m = curl_multi_info_read(s->multi, &left)))
            if (m->msg == CURLMSG_DONE)
                transfer_done(s, m->easy_handle, m->data.result);
    }
}

int cli_attach(struct cli_client *c, const struct cli_attach *a, struct cli_attach_result *ret,
               struct cli_error *err)
{
    struct session s = {.c = c, .a = a, .err = err};
    struct xfer *all[] = {&s.out[0], &s.out[1], &s.in, &s.wait, &s.control};
    int r;

    *ret = (struct cli_attach_result){0};
    s.out[0] = (struct xfer){.s = &s, .kind = X_STDOUT, .fd = STDOUT_FILENO};
    s.out[1] = (struct xfer){.s = &s, .kind = X_STDERR, .fd = STDERR_FILENO};
    s.in = (struct xfer){.s = &s, .kind = X_STDIN};
    s.wait = (struct xfer){.s = &s, .kind = X_WAIT};
    s.control = (struct xfer){.s = &s, .kind = X_CONTROL};
    s.base = a->process_id
                 ? cli_strdupf("/v1/sandboxes/%s/processes/%s", a->sandbox_id, a->process_id)
                 : cli_strdupf("/v1/sandboxes/%s", a->sandbox_id);
    s.multi = curl_multi_init();
    if (!s.multi) {
        free(s.base);
        return cli_error_set(err, 0, "out of memory");
    }
    r = cli_signals_init(a->tty, err);
    if (r < 0)
        goto out;
    if (a->forward_stdin) {
        s.inbuf = malloc(STDIN_BUF);
        if (!s.inbuf) {
            r = cli_error_errno(err, ENOMEM, "stdin buffer");
            goto out;
        }
    }
    /* Without forwarding, the process's stdin is closed at once, as if it
     * read an empty file (docker run without -i). */
    s.in_eof = !a->forward_stdin;
    if (a->tty && a->forward_stdin && isatty(STDIN_FILENO)) {
        r = cli_term_raw(STDIN_FILENO, err);
        if (r < 0)
            goto out;
    }
    if (a->want_stdout)
        stream_start(&s, &s.out[0]);
    if (a->want_stderr)
        stream_start(&s, &s.out[1]);
    r = loop(&s);
out:
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        xfer_end(&s, all[i]);
        cli_buf_free(&all[i]->body);
    }
    curl_multi_cleanup(s.multi);
    cli_term_restore();
    cli_signals_reset();
    if (s.ended_by_signal)
        cli_exit_signal = s.ended_by_signal;
    if (r >= 0 && s.ended_by_signal && a->tty && a->process_id) {
        /* Like a closed ssh session: the process gets the signal too. */
        _cleanup_free_ char *path = cli_strdupf("%s/signal", s.base);
        _cleanup_json_ json_t *body = json_pack("{s:i}", "signal", s.ended_by_signal);
        struct cli_error ignored = {0};
        (void)cli_call(c, "POST", path, body, NULL, &ignored);
        cli_error_free(&ignored);
    }
    ret->has_returncode = s.has_returncode;
    ret->returncode = s.returncode;
    ret->signal = s.ended_by_signal;
    ret->output_closed = s.output_closed;
    ret->record = s.record;
    free(s.inbuf);
    free(s.base);
    return r < 0 ? r : 0;
}
