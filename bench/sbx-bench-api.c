/* sbx-bench-api — sandboxd through its REST API on the unix socket:
 *
 *   sbx-bench-api --socket PATH [-n N] [--stream-mib M] [--stream-runs R] [--pooled]
 *                 [--creates-only] [--samples-dir DIR]
 *
 * prints, one line each (times in ms):
 *   create+exec   POST /v1/sandboxes (idle) → POST exec /bin/true → wait → returncode
 *   create+run    POST /v1/sandboxes with entrypoint /bin/true → wait → returncode
 *   create+exec-block-network
 *                 create+exec of a sandbox with "block_network": true (loopback
 *                 only; never served from a pool)
 *   exec          exec /bin/true → wait → returncode, in one running sandbox
 *   exec-idle     the same 100 ms after the last one (the host idle in between,
 *                 as between an agent's commands): what the kernel makes a
 *                 first cgroup move after a quiet spell cost shows here
 *   stream        MB/s of `head -c M MiB /dev/zero` (debian-slim) read by a following client,
 *                 R times (--stream-runs, default 1)
 * Sandboxes are deleted after each sample, outside the timed part.
 *
 * --pooled: only the create+exec and create+run rows, against a daemon that
 * keeps busybox sandboxes made ahead ("pool" in its config): before each
 * create, untimed, it waits until the pool has one ready, and at the end it
 * checks that every create was served from the pool (exit 1 if not).
 * --creates-only: only the create+exec and create+run rows, without the
 * pool's checks (a daemon without a pool, e.g. with --no-network).
 * --samples-dir DIR: every row's samples (ms, one per line, in the order
 * taken) go to DIR/ROW.ms, the stream's MB/s to DIR/stream.mbs.
 * SBX_BENCH_SAMPLES=1 in the environment also prints every sample (ms) to
 * stderr, to see what the tail is made of. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *sock = "/run/sandboxd/sandboxd.sock";
static const char *samples_dir;
static CURL *curl;

struct buf {
    char *data;
    size_t len;
    bool discard;
};

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct buf *b = ud;

    if (!b->discard) {
        b->data = realloc(b->data, b->len + sz * n + 1);
        memcpy(b->data + b->len, p, sz * n);
        b->data[b->len + sz * n] = '\0';
    }
    b->len += sz * n;
    return sz * n;
}

static double now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* One request on the reused connection; returns the parsed JSON body (or
 * NULL) and the byte count in *ret_len. */
static json_t *req(const char *method, const char *path, const char *body, bool discard,
                   size_t *ret_len)
{
    char url[512];
    struct buf b = {.discard = discard};
    long status = 0;
    json_t *j = NULL;
    json_error_t e;

    snprintf(url, sizeof(url), "http://localhost%s", path);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
    curl_easy_setopt(curl, CURLOPT_HTTPGET, body ? 0L : (long)!strcmp(method, "GET"));
    if (!body && strcmp(method, "GET"))
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    if (curl_easy_perform(curl) != CURLE_OK) {
        fprintf(stderr, "sbx-bench-api: %s %s failed\n", method, path);
        exit(1);
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 300) {
        fprintf(stderr, "sbx-bench-api: %s %s → %ld %s\n", method, path, status,
                b.data ? b.data : "");
        exit(1);
    }
    if (b.data)
        j = json_loads(b.data, JSON_DECODE_ANY, &e);
    free(b.data);
    if (ret_len)
        *ret_len = b.len;
    return j;
}

static char *create(const char *body)
{
    json_t *r = req("POST", "/v1/sandboxes", body, false, NULL);
    char *id = strdup(json_string_value(json_object_get(r, "sandbox_id")));

    json_decref(r);
    return id;
}

static int exec_true(const char *id)
{
    char path[256];
    json_t *r;
    int rc;

    snprintf(path, sizeof(path), "/v1/sandboxes/%s/exec", id);
    r = req("POST", path, "{\"argv\":[\"/bin/true\"]}", false, NULL);
    snprintf(path, sizeof(path), "/v1/sandboxes/%s/processes/%s/wait?timeout_s=30", id,
             json_string_value(json_object_get(r, "process_id")));
    json_decref(r);
    r = req("GET", path, NULL, false, NULL);
    rc = (int)json_integer_value(json_object_get(r, "returncode"));
    json_decref(r);
    return rc;
}

static void delete (const char *id)
{
    char path[128];

    snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
    json_decref(req("DELETE", path, NULL, false, NULL));
}

/* --pooled: waits (untimed) until the daemon's pool has a sandbox ready,
 * so that each timed create is served from it; returns the pool's
 * "claimed" count. */
static long long pool_wait_ready(void)
{
    for (int i = 0; i < 2000; i++) {
        json_t *r = req("GET", "/v1/info", NULL, false, NULL);
        json_t *p = json_object_get(r, "pool");
        long long ready = json_integer_value(json_object_get(p, "ready"));
        long long claimed = json_integer_value(json_object_get(p, "claimed"));

        json_decref(r);
        if (ready > 0)
            return claimed;
        usleep(5000);
    }
    fprintf(stderr, "sbx-bench-api: the daemon's pool never got a sandbox ready\n");
    exit(1);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* DIR/NAME (--samples-dir), or NULL. */
static FILE *samples_file(const char *name)
{
    char path[4096];
    FILE *f;

    if (!samples_dir)
        return NULL;
    snprintf(path, sizeof(path), "%s/%s", samples_dir, name);
    f = fopen(path, "we");
    if (!f)
        fprintf(stderr, "sbx-bench-api: %s: %s\n", path, strerror(errno));
    return f;
}

static void report(const char *name, double *v, int n)
{
    char file[256];
    FILE *f;

    snprintf(file, sizeof(file), "%s.ms", name);
    if ((f = samples_file(file))) {
        for (int i = 0; i < n; i++)
            fprintf(f, "%.3f\n", v[i]);
        fclose(f);
    }
    if (getenv("SBX_BENCH_SAMPLES"))
        for (int i = 0; i < n; i++)
            fprintf(stderr, "%s %d %.3f\n", name, i, v[i]);
    qsort(v, (size_t)n, sizeof(*v), cmp);
    printf("%-14s n=%d median=%.2fms p99=%.2fms min=%.2fms\n", name, n, v[n / 2],
           v[(int)(n * 0.99) < n ? (int)(n * 0.99) : n - 1], v[0]);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"socket", required_argument, NULL, 's'},
                                         {"stream-mib", required_argument, NULL, 'm'},
                                         {"pooled", no_argument, NULL, 'p'},
                                         {"creates-only", no_argument, NULL, 'C'},
                                         {"stream-runs", required_argument, NULL, 'r'},
                                         {"samples-dir", required_argument, NULL, 'd'},
                                         {NULL, 0, NULL, 0}};
    int n = 100, mib = 1024, runs = 1, c;
    bool pooled = false, creates_only = false;
    long long claimed0 = 0;
    double *v;
    char *id;

    while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
        if (c == 'n')
            n = atoi(optarg);
        else if (c == 's')
            sock = optarg;
        else if (c == 'm')
            mib = atoi(optarg);
        else if (c == 'p')
            pooled = true;
        else if (c == 'C')
            creates_only = true;
        else if (c == 'r')
            runs = atoi(optarg) > 0 ? atoi(optarg) : 1;
        else if (c == 'd')
            samples_dir = optarg;
        else
            return 2;
    }
    if (n < 1)
        n = 1;
    if (samples_dir && mkdir(samples_dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "sbx-bench-api: %s: %s\n", samples_dir, strerror(errno));
        return 1;
    }
    v = calloc((size_t)n, sizeof(*v));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    curl = curl_easy_init();
    curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);

    for (int i = 0; i < n; i++) {
        double t0;
        if (pooled) {
            long long c0 = pool_wait_ready();
            if (i == 0)
                claimed0 = c0;
        }
        t0 = now_ms();
        id = create("{\"image\":\"busybox\"}");
        if (exec_true(id) != 0)
            return 1;
        v[i] = now_ms() - t0;
        delete (id);
        free(id);
    }
    report("create+exec", v, n);

    for (int i = 0; i < n; i++) {
        char path[128];
        json_t *r;
        double t0;
        if (pooled)
            pool_wait_ready();
        t0 = now_ms();
        id = create("{\"image\":\"busybox\",\"entrypoint\":[\"/bin/true\"]}");
        snprintf(path, sizeof(path), "/v1/sandboxes/%s/wait?timeout_s=30", id);
        r = req("GET", path, NULL, false, NULL);
        v[i] = now_ms() - t0;
        if (json_integer_value(json_object_get(r, "returncode")) != 0)
            return 1;
        json_decref(r);
        delete (id);
        free(id);
    }
    report("create+run", v, n);
    if (pooled) {
        /* Each create above was to be served from the pool: say so. */
        long long served = pool_wait_ready() - claimed0;
        printf("served from the pool: %lld of %d creates\n", served, 2 * n);
        curl_easy_cleanup(curl);
        curl_global_cleanup();
        free(v);
        return served == 2 * n ? 0 : 1;
    }
    if (creates_only) {
        curl_easy_cleanup(curl);
        curl_global_cleanup();
        free(v);
        return 0;
    }

    /* Loopback only: the monitor makes the sandbox's network namespace on
     * the create's path (the daemon's pool of them has eth0 on the bridge). */
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        id = create("{\"image\":\"busybox\",\"block_network\":true}");
        if (exec_true(id) != 0)
            return 1;
        v[i] = now_ms() - t0;
        delete (id);
        free(id);
    }
    report("create+exec-block-network", v, n);

    id = create("{\"image\":\"busybox\"}");
    exec_true(id);
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        if (exec_true(id) != 0)
            return 1;
        v[i] = now_ms() - t0;
    }
    report("exec", v, n);
    {
        int m = n < 50 ? n : 50;
        for (int i = 0; i < m; i++) {
            double t0;
            usleep(100000);
            t0 = now_ms();
            if (exec_true(id) != 0)
                return 1;
            v[i] = now_ms() - t0;
        }
        report("exec-idle", v, m);
    }

    delete (id);
    free(id);
    /* GNU head (debian-slim): busybox's reads byte by byte, ~150 MB/s. */
    id = create("{\"image\":\"debian-slim\"}");
    {
        char path[256], body[128];
        json_t *r;
        FILE *f = samples_file("stream.mbs");

        /* A reader of bulk output asks for big reads (curl's default is 16 KiB). */
        curl_easy_setopt(curl, CURLOPT_BUFFERSIZE, 512L * 1024);
        for (int i = 0; i < runs; i++) {
            size_t len = 0;
            double t0, ms;

            snprintf(path, sizeof(path), "/v1/sandboxes/%s/exec", id);
            snprintf(body, sizeof(body), "{\"argv\":[\"head\",\"-c\",\"%lld\",\"/dev/zero\"]}",
                     (long long)mib << 20);
            t0 = now_ms();
            r = req("POST", path, body, false, NULL);
            snprintf(path, sizeof(path), "/v1/sandboxes/%s/processes/%s/stdout?follow=1", id,
                     json_string_value(json_object_get(r, "process_id")));
            json_decref(r);
            json_decref(req("GET", path, NULL, true, &len));
            ms = now_ms() - t0;
            /* A client that fell behind the output limit is cut off. */
            if (len != (size_t)mib << 20)
                fprintf(stderr, "sbx-bench-api: stream: got %zu bytes of %zu\n", len,
                        (size_t)mib << 20);
            printf("stream         %zu MiB in %.0f ms = %.0f MB/s\n", len >> 20, ms,
                   len / 1e3 / ms);
            if (f)
                fprintf(f, "%.1f\n", len / 1e3 / ms);
        }
        if (f)
            fclose(f);
    }
    delete (id);
    free(id);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    free(v);
    return 0;
}
