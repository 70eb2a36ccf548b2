/* format.c — what sbx prints: aligned tables, times, sizes, JSON. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <string.h>
#include <time.h>

struct cli_table {
    size_t ncols, nrows, cap;
    char **cells; /* nrows * ncols, row 0 the headers */
};

static char *dup_or_dash(const char *s)
{
    char *d = strdup(s && *s ? s : "-");

    if (!d) {
        fputs("sbx: out of memory\n", stderr);
        exit(CLI_EXIT_FAILURE);
    }
    return d;
}

struct cli_table *cli_table_new(size_t ncols, const char *const *headers)
{
    struct cli_table *t = calloc(1, sizeof(*t));

    if (!t) {
        fputs("sbx: out of memory\n", stderr);
        exit(CLI_EXIT_FAILURE);
    }
    t->ncols = ncols;
    cli_table_add(t, headers);
    return t;
}

void cli_table_add(struct cli_table *t, const char *const *cells)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **nc = reallocarray(t->cells, cap * t->ncols, sizeof(char *));
        if (!nc) {
            fputs("sbx: out of memory\n", stderr);
            exit(CLI_EXIT_FAILURE);
        }
        t->cells = nc;
        t->cap = cap;
    }
    for (size_t i = 0; i < t->ncols; i++)
        t->cells[t->nrows * t->ncols + i] = dup_or_dash(cells[i]);
    t->nrows++;
}

/* Display width: UTF-8 continuation bytes take no column. */
static size_t width(const char *s)
{
    size_t w = 0;

    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

void cli_table_print(struct cli_table *t, FILE *f)
{
    _cleanup_free_ size_t *w = calloc(t->ncols, sizeof(size_t));

    if (!w)
        return;
    for (size_t r = 0; r < t->nrows; r++)
        for (size_t c = 0; c < t->ncols; c++) {
            size_t n = width(t->cells[r * t->ncols + c]);
            if (n > w[c])
                w[c] = n;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        for (size_t c = 0; c < t->ncols; c++) {
            const char *cell = t->cells[r * t->ncols + c];
            if (c + 1 == t->ncols) {
                fputs(cell, f);
                break;
            }
            fprintf(f, "%s%*s", cell, (int)(w[c] - width(cell) + 3), "");
        }
        fputc('\n', f);
    }
}

void cli_table_free(struct cli_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t);
}

char *cli_fmt_duration(double s)
{
    long long n = s < 0 ? 0 : (long long)llround(s);

    if (s < 1 && s > 0)
        return cli_strdupf("%.0fms", s * 1000);
    if (n < 60)
        return cli_strdupf("%llds", n);
    if (n < 3600)
        return cli_strdupf("%lldm%02llds", n / 60, n % 60);
    if (n < 86400)
        return cli_strdupf("%lldh%02lldm", n / 3600, n % 3600 / 60);
    return cli_strdupf("%lldd%02lldh", n / 86400, n % 86400 / 3600);
}

char *cli_fmt_ago(double t)
{
    double d = (double)time(NULL) - t;
    long long n = d < 0 ? 0 : (long long)d;

    if (n < 2)
        return cli_strdupf("just now");
    if (n < 60)
        return cli_strdupf("%lld seconds ago", n);
    if (n < 7200)
        return cli_strdupf("%lld minutes ago", n / 60);
    if (n < 2 * 86400)
        return cli_strdupf("%lld hours ago", n / 3600);
    return cli_strdupf("%lld days ago", n / 86400);
}

char *cli_fmt_time(double t)
{
    time_t secs = (time_t)t;
    struct tm tm;
    char buf[64];

    if (!localtime_r(&secs, &tm) || !strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm))
        return cli_strdupf("%.3f", t);
    return cli_strdupf("%s.%03d", buf, (int)((t - (double)secs) * 1000));
}

char *cli_fmt_bytes(uint64_t n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)n;
    size_t u = 0;

    while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        return cli_strdupf("%llu B", (unsigned long long)n);
    return cli_strdupf(v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

char *cli_fmt_status(json_t *rec)
{
    const char *state = cli_str(rec, "state");
    const char *reason = cli_str(rec, "finish_reason");
    json_t *rc = json_object_get(rec, "returncode");
    double started = json_number_value(json_object_get(rec, "started_at"));
    double finished = json_number_value(json_object_get(rec, "finished_at"));
    _cleanup_free_ char *ago = NULL, *up = NULL;

    if (!state)
        return cli_strdupf("?");
    if (strcmp(state, "finished")) {
        if (!started)
            return cli_strdupf("%s", state);
        up = cli_fmt_duration((double)time(NULL) - started);
        return cli_strdupf("up %s", up);
    }
    ago = finished ? cli_fmt_ago(finished) : cli_strdupf("?");
    if (json_is_integer(rc))
        return cli_strdupf("%s (%lld) %s", reason ? reason : "finished",
                           (long long)json_integer_value(rc), ago);
    return cli_strdupf("%s %s", reason ? reason : "finished", ago);
}

char *cli_fmt_tags(json_t *rec)
{
    struct cli_buf b = {0};
    const char *k;
    json_t *v;

    json_object_foreach(json_object_get(rec, "tags"), k, v)
    {
        const char *s = json_string_value(v);
        if (b.len)
            cli_buf_append(&b, ",", 1);
        cli_buf_append(&b, k, strlen(k));
        cli_buf_append(&b, "=", 1);
        cli_buf_append(&b, s ? s : "", s ? strlen(s) : 0);
    }
    return b.data ? b.data : cli_strdupf("%s", "");
}

static int by_key(const void *a, const void *b, void *key)
{
    return strcmp(cli_str(*(json_t *const *)a, key) ?: "", cli_str(*(json_t *const *)b, key) ?: "");
}

json_t *cli_sorted_by(json_t *list, const char *key)
{
    size_t n = json_array_size(list), i;
    _cleanup_free_ json_t **rows = calloc(n + 1, sizeof(*rows));
    json_t *sorted = json_array(), *v;

    if (!rows || !sorted) {
        json_decref(sorted);
        return NULL;
    }
    json_array_foreach(list, i, v) rows[i] = v;
    qsort_r(rows, n, sizeof(*rows), by_key, (void *)key);
    for (i = 0; i < n; i++)
        json_array_append(sorted, rows[i]);
    return sorted;
}

int cli_print_json(json_t *j)
{
    if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY) < 0)
        return -EIO;
    fputc('\n', stdout);
    return 0;
}

int cli_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                /* Someone made the fd non-blocking: wait until it takes more. */
                struct pollfd pfd = {.fd = fd, .events = POLLOUT};
                (void)poll(&pfd, 1, -1);
                continue;
            }
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
