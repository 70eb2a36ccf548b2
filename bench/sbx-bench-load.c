/* sbx-bench-load — sandboxd under load, through its REST API on the unix socket.
 *
 *   sbx-bench-load --socket PATH --rate [-c C] [-t T] [--samples-dir DIR]
 *       Sustained creation rate: C clients (threads, each with its own
 *       kept-alive connection) loop for T seconds after a 1 s warm-up:
 *       POST /v1/sandboxes {"image":"busybox"} → exec /bin/true → wait →
 *       returncode 0 → DELETE.  Prints the completed loops per second over
 *       the window and the create → result latency of the loops that
 *       started in it, once with the daemon's network (row `rate`) and once
 *       with "block_network": true (row `rate-block-network`).  With
 *       --daemon-pid, also where the CPU time went in the window, per loop
 *       (rows `rate-cpu`, `rate-block-network-cpu`).
 *
 *   sbx-bench-load --rate-cmd --name NAME [-c C] [-t T] -- CMD [ARG...]
 *       The same loop for a peer: C concurrent spawns of CMD, each waited
 *       for (exit 0 required); "{i}" in an argument becomes a number unique
 *       to the run, so that each can name a fresh container.
 *
 *   sbx-bench-load --socket PATH --density N [--step S] [--clients K] [-t T]
 *                  --daemon-pid PID --cgroup-parent P [--samples-dir DIR]
 *       Creates N idle busybox sandboxes (each checked with one exec of
 *       /bin/true) in steps of S (default 100) and after each step records
 *       the host's memory: MemTotal − MemAvailable (less the per-CPU free
 *       pages of /proc/zoneinfo, free but not in MemFree) and its kernel parts
 *       (/proc/meminfo), the daemon's PSS, the PSS of every other process
 *       under the daemon that is not in a sandbox's cgroup (the monitors,
 *       their zygote, the netns pool helper), and the PSS of the sandboxes'
 *       own processes (those in a cgroup P/sb-…).  With the N sandboxes
 *       idle, K clients (default 100) run a mix of requests for T seconds
 *       on random sandboxes, each sending its next request as soon as it
 *       has the last answer (rows load-*); with --think-ms MS, again with
 *       each client pausing 0 to 2·MS ms before each request (rows
 *       paced-load-*).  Then all N are deleted (timed) and the memory is
 *       checked to come back.
 *
 * Every latency is CLOCK_MONOTONIC around the requests, in ms; percentiles
 * are nearest-rank (stats.h).  One line per row on stdout:
 *   NAME n=… median=…ms p99=…ms min=…ms [rate=…/s]
 * and, with --samples-dir, every sample (ms, one per line) in DIR/NAME.ms
 * and the memory series in DIR/density-memory.tsv.  Any failed request is
 * reported with its status and the daemon's answer, and the exit status is
 * 1; a density run that fails part-way still deletes what it made. */
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kernel.h"
#include "stats.h"

#define ID_MAX          64
#define REQUEST_TIMEOUT 60L  /* s: a request that takes longer is a failure, not a hang */
#define LOAD_MAX_ERRORS 1000 /* the load phase stops early after this many */

extern char **environ;

static const char *sock = "/run/sandboxd/sandboxd.sock";
static const char *samples_dir;

/* The first failure, said once; every thread stops at the next check. */
static atomic_bool failed;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static char fail_msg[2048];

static void fail(const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&fail_lock);
    if (!atomic_load(&failed)) {
        va_start(ap, fmt);
        vsnprintf(fail_msg, sizeof(fail_msg), fmt, ap);
        va_end(ap);
        atomic_store(&failed, true);
    }
    pthread_mutex_unlock(&fail_lock);
}

/* ---- samples ---- */

struct vec {
    uint64_t *v; /* ns */
    size_t n, cap;
};

static void vec_push(struct vec *s, uint64_t x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        if (!s->v) {
            perror("sbx-bench-load: realloc");
            exit(1);
        }
    }
    s->v[s->n++] = x;
}

static void vec_append(struct vec *to, const struct vec *from)
{
    for (size_t i = 0; i < from->n; i++)
        vec_push(to, from->v[i]);
}

/* Writes the samples (ms, in the order taken) to DIR/NAME.ms. */
static void write_samples(const char *name, const struct vec *s)
{
    char path[PATH_MAX];
    FILE *f;

    if (!samples_dir)
        return;
    snprintf(path, sizeof(path), "%s/%s.ms", samples_dir, name);
    f = fopen(path, "we");
    if (!f) {
        fprintf(stderr, "sbx-bench-load: %s: %s\n", path, strerror(errno));
        return;
    }
    for (size_t i = 0; i < s->n; i++)
        fprintf(f, "%.3f\n", (double)s->v[i] / 1e6);
    fclose(f);
}

/* Prints "NAME n=… median=…ms p99=…ms min=…ms" and, when rate >= 0,
 * " rate=…/s", then the rest (EXTRA); writes the samples first, since the
 * summary sorts them. */
static void report(const char *name, struct vec *s, double rate, const char *extra)
{
    write_samples(name, s);
    printf("%-22s n=%zu", name, s->n);
    if (s->n) {
        qsort(s->v, s->n, sizeof(*s->v), compare_u64);
        printf(" median=%.2fms p99=%.2fms min=%.2fms", percentile_ms(s->v, s->n, 50),
               percentile_ms(s->v, s->n, 99), (double)s->v[0] / 1e6);
    }
    if (rate >= 0)
        printf(" rate=%.1f/s", rate);
    printf("%s%s\n", extra ? " " : "", extra ? extra : "");
    fflush(stdout);
}

/* ---- one client: a curl handle with its kept-alive connection ---- */

struct client {
    CURL *curl;
    char *data;
    size_t len, cap;
    char err[1024]; /* what the last failed call was */
};

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct client *c = ud;
    size_t add = sz * n;

    if (c->len + add + 1 > c->cap) {
        size_t cap = c->cap ? c->cap : 4096;
        char *d;

        while (cap < c->len + add + 1)
            cap *= 2;
        d = realloc(c->data, cap);
        if (!d)
            return 0;
        c->data = d;
        c->cap = cap;
    }
    memcpy(c->data + c->len, p, add);
    c->len += add;
    c->data[c->len] = '\0';
    return add;
}

static void client_init(struct client *c)
{
    memset(c, 0, sizeof(*c));
    c->curl = curl_easy_init();
    if (!c->curl) {
        fprintf(stderr, "sbx-bench-load: curl_easy_init failed\n");
        exit(1);
    }
    curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT);
}

static void client_free(struct client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    free(c->data);
    c->curl = NULL;
    c->data = NULL;
}

/* One request on the client's connection.  Returns 0 on a 2xx answer, with
 * its parsed body in *ret (when ret is not NULL); -1 otherwise, with the
 * status and the daemon's answer (or curl's error) in c->err. */
static int call(struct client *c, const char *method, const char *path, const char *body,
                json_t **ret)
{
    char url[512];
    long status = 0;
    CURLcode rc;

    if (ret)
        *ret = NULL;
    c->len = 0;
    if (c->data)
        c->data[0] = '\0';
    snprintf(url, sizeof(url), "http://localhost%s", path);
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    if (!strcmp(method, "GET")) {
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, NULL);
    } else {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, body ? (long)strlen(body) : 0L);
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    }
    rc = curl_easy_perform(c->curl);
    if (rc != CURLE_OK) {
        snprintf(c->err, sizeof(c->err), "%s %s: %s", method, path, curl_easy_strerror(rc));
        return -1;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) {
        snprintf(c->err, sizeof(c->err), "%s %s → %ld %.*s", method, path, status, 600,
                 c->data ? c->data : "");
        /* Without a trailing newline, in case the answer had one. */
        c->err[strcspn(c->err, "\n")] = '\0';
        return -1;
    }
    if (ret && c->len) {
        json_error_t e;

        *ret = json_loads(c->data, JSON_DECODE_ANY, &e);
        if (!*ret) {
            snprintf(c->err, sizeof(c->err), "%s %s: the answer is not JSON: %s", method, path,
                     e.text);
            return -1;
        }
    }
    return 0;
}

/* POST /v1/sandboxes with BODY; the new id in id[ID_MAX]. */
static int sandbox_create(struct client *c, const char *body, char *id)
{
    json_t *r;
    const char *s;

    if (call(c, "POST", "/v1/sandboxes", body, &r) < 0)
        return -1;
    s = json_string_value(json_object_get(r, "sandbox_id"));
    if (!s || strlen(s) >= ID_MAX) {
        snprintf(c->err, sizeof(c->err), "POST /v1/sandboxes: no sandbox_id in the answer");
        json_decref(r);
        return -1;
    }
    strcpy(id, s);
    json_decref(r);
    return 0;
}

/* POST …/exec {"argv":["/bin/true"]}; the process id in pid[ID_MAX]. */
static int exec_start(struct client *c, const char *id, char *pid)
{
    char path[256];
    json_t *r;
    const char *s;

    snprintf(path, sizeof(path), "/v1/sandboxes/%s/exec", id);
    if (call(c, "POST", path, "{\"argv\":[\"/bin/true\"]}", &r) < 0)
        return -1;
    s = json_string_value(json_object_get(r, "process_id"));
    if (!s || strlen(s) >= ID_MAX) {
        snprintf(c->err, sizeof(c->err), "POST %s: no process_id in the answer", path);
        json_decref(r);
        return -1;
    }
    strcpy(pid, s);
    json_decref(r);
    return 0;
}

/* GET …/processes/PID/wait; fails unless the returncode is 0. */
static int exec_wait(struct client *c, const char *id, const char *pid)
{
    char path[256];
    json_t *r, *rc;

    snprintf(path, sizeof(path), "/v1/sandboxes/%s/processes/%s/wait?timeout_s=60", id, pid);
    if (call(c, "GET", path, NULL, &r) < 0)
        return -1;
    rc = json_object_get(r, "returncode");
    if (!json_is_integer(rc) || json_integer_value(rc) != 0) {
        snprintf(c->err, sizeof(c->err), "GET %s: /bin/true's returncode is %s", path,
                 json_is_integer(rc) ? "not 0" : "null (still running after 60 s)");
        json_decref(r);
        return -1;
    }
    json_decref(r);
    return 0;
}

static int exec_true(struct client *c, const char *id)
{
    char pid[ID_MAX];

    return exec_start(c, id, pid) < 0 ? -1 : exec_wait(c, id, pid);
}

static int sandbox_delete(struct client *c, const char *id)
{
    char path[128];

    snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
    return call(c, "DELETE", path, NULL, NULL);
}

/* ---- --rate ---- */

struct rate_thread {
    pthread_t thread;
    const char *body;  /* sandboxes: the create's body */
    char *const *argv; /* peers: the command, with {i} */
    uint64_t begin_ns; /* the window, after the warm-up */
    uint64_t end_ns;
    struct client c;
    struct vec latency; /* loops that started in the window */
    long completed;     /* loops that ended in it */
};

static void *rate_sandboxes(void *arg)
{
    struct rate_thread *t = arg;
    char id[ID_MAX];

    while (!atomic_load(&failed)) {
        uint64_t t0 = now_ns(), t1, t2;

        if (t0 >= t->end_ns)
            break;
        if (sandbox_create(&t->c, t->body, id) < 0) {
            fail("%s", t->c.err);
            break;
        }
        if (exec_true(&t->c, id) < 0) {
            fail("%s", t->c.err);
            sandbox_delete(&t->c, id);
            break;
        }
        t1 = now_ns();
        if (sandbox_delete(&t->c, id) < 0) {
            fail("%s", t->c.err);
            break;
        }
        t2 = now_ns();
        if (t0 >= t->begin_ns && t0 < t->end_ns)
            vec_push(&t->latency, t1 - t0);
        if (t2 >= t->begin_ns && t2 <= t->end_ns)
            t->completed++;
    }
    return NULL;
}

static atomic_long peer_counter;

static void *rate_command(void *arg)
{
    struct rate_thread *t = arg;
    char *argv[256];
    char numbered[256][256];
    int argc = 0;
    posix_spawn_file_actions_t fa;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    while (t->argv[argc] && argc < 255)
        argc++;
    argv[argc] = NULL;
    while (!atomic_load(&failed)) {
        uint64_t t0 = now_ns(), t1;
        long i = atomic_fetch_add(&peer_counter, 1);
        pid_t pid;
        int status, r;

        if (t0 >= t->end_ns)
            break;
        for (int a = 0; a < argc; a++) {
            const char *s = t->argv[a], *brace = strstr(s, "{i}");

            if (brace) {
                snprintf(numbered[a], sizeof(numbered[a]), "%.*s%ld%s", (int)(brace - s), s, i,
                         brace + 3);
                argv[a] = numbered[a];
            } else {
                argv[a] = (char *)s;
            }
        }
        r = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
        if (r != 0) {
            fail("spawn %s: %s", argv[0], strerror(r));
            break;
        }
        if (waitpid(pid, &status, 0) < 0) {
            fail("waitpid %s: %s", argv[0], strerror(errno));
            break;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fail("%s (run %ld) exited with %d", argv[0], i,
                 WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            break;
        }
        t1 = now_ns();
        if (t0 >= t->begin_ns && t0 < t->end_ns)
            vec_push(&t->latency, t1 - t0);
        if (t1 >= t->begin_ns && t1 <= t->end_ns)
            t->completed++;
    }
    posix_spawn_file_actions_destroy(&fa);
    return NULL;
}

/* CPU time (clock ticks) of the host and of the daemon's long-lived
 * processes.  The monitors are not here: their zygote ignores SIGCHLD, so
 * the kernel reaps them and their time is nobody's; it shows in the rest. */
struct cpu {
    long long busy, all; /* /proc/stat, every CPU */
    long long daemon;    /* sandboxd */
    long long zygote;    /* the monitors' zygote itself */
    long long netpool;   /* the network namespace pool helper */
    long long self;      /* this bench */
};

static pid_t rate_daemon; /* --daemon-pid: where a rate row's CPU time goes */

static void cpu_snapshot(pid_t daemon, struct cpu *c);

static void sleep_until(uint64_t t)
{
    uint64_t now = now_ns();

    if (t > now)
        usleep((useconds_t)((t - now) / 1000));
}

/* Prints where the CPU went in a rate row's window, per loop. */
static void report_cpu(const char *name, const struct cpu *a, const struct cpu *b, long loops)
{
    double tick_ms = 1000.0 / (double)sysconf(_SC_CLK_TCK), n = loops > 0 ? (double)loops : 1;
    long long busy = b->busy - a->busy, daemon = b->daemon - a->daemon,
              zygote = b->zygote - a->zygote, netpool = b->netpool - a->netpool,
              self = b->self - a->self;
    char row[64];

    snprintf(row, sizeof(row), "%s-cpu", name);
    printf("%-22s per loop: daemon=%.2fms zygote=%.2fms netpool=%.2fms bench=%.2fms "
           "rest=%.2fms (CPU time; the rest: monitors, sandboxes, kernel threads, anything "
           "else on the host; all CPUs %.0f%% busy)\n",
           row, daemon * tick_ms / n, zygote * tick_ms / n, netpool * tick_ms / n,
           self * tick_ms / n, (busy - daemon - zygote - netpool - self) * tick_ms / n,
           b->all > a->all ? 100.0 * (double)busy / (double)(b->all - a->all) : 0);
}

/* Runs one rate row: C threads, a warm-up of W s, a window of T s. */
static int rate_row(const char *name, const char *body, char *const *argv, int clients,
                    double warmup_s, double seconds)
{
    struct cpu cpu0 = {0}, cpu1 = {0};
    struct rate_thread *t = calloc((size_t)clients, sizeof(*t));
    struct vec all = {0};
    long completed = 0;
    uint64_t start = now_ns();
    char extra[64];

    for (int i = 0; i < clients; i++) {
        t[i].body = body;
        t[i].argv = argv;
        t[i].begin_ns = start + (uint64_t)(warmup_s * 1e9);
        t[i].end_ns = t[i].begin_ns + (uint64_t)(seconds * 1e9);
        if (body)
            client_init(&t[i].c);
        pthread_create(&t[i].thread, NULL, body ? rate_sandboxes : rate_command, &t[i]);
    }
    if (rate_daemon > 0) {
        sleep_until(t[0].begin_ns);
        cpu_snapshot(rate_daemon, &cpu0);
        sleep_until(t[0].end_ns);
        cpu_snapshot(rate_daemon, &cpu1);
    }
    for (int i = 0; i < clients; i++) {
        pthread_join(t[i].thread, NULL);
        vec_append(&all, &t[i].latency);
        completed += t[i].completed;
        free(t[i].latency.v);
        client_free(&t[i].c);
    }
    free(t);
    if (atomic_load(&failed)) {
        fprintf(stderr, "sbx-bench-load: %s: %s\n", name, fail_msg);
        printf("%-22s failed: %s\n", name, fail_msg);
        free(all.v);
        return -1;
    }
    snprintf(extra, sizeof(extra), "clients=%d window=%.0fs", clients, seconds);
    report(name, &all, (double)completed / seconds, extra);
    if (rate_daemon > 0)
        report_cpu(name, &cpu0, &cpu1, completed);
    free(all.v);
    return 0;
}

/* ---- --density: the host's memory ---- */

/* KiB, except the counts. */
struct mem {
    long count;
    long long used, slab, sunreclaim, pagetables, kernelstack, percpu, shmem, pcp;
    long long daemon_rss, daemon_pss, daemon_pss_file;
    long long helpers_pss, helpers_pss_file; /* monitors, zygote, netns pool */
    long long sandbox_pss, sandbox_pss_file; /* the sandboxes' own processes */
    long monitors, helpers, sandbox_procs, daemon_fds;
    long long cg_usage, cg_kmem; /* the sandboxes' memory cgroups, -1 if not found */
};

static const char *mem_header =
    "# count used slab sunreclaim pagetables kernelstack percpu shmem daemon_rss daemon_pss "
    "daemon_pss_file helpers_pss helpers_pss_file sandbox_pss sandbox_pss_file monitors "
    "helpers sandbox_procs daemon_fds cg_usage cg_kmem pcp\n";

static void mem_print(FILE *f, const struct mem *m)
{
    fprintf(f,
            "%ld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %ld %ld %ld "
            "%ld %lld %lld %lld\n",
            m->count, m->used, m->slab, m->sunreclaim, m->pagetables, m->kernelstack, m->percpu,
            m->shmem, m->daemon_rss, m->daemon_pss, m->daemon_pss_file, m->helpers_pss,
            m->helpers_pss_file, m->sandbox_pss, m->sandbox_pss_file, m->monitors, m->helpers,
            m->sandbox_procs, m->daemon_fds, m->cg_usage, m->cg_kmem, m->pcp);
}

/* What of a process's PSS MemAvailable does not count as free: its
 * anonymous and shared-memory pages (its file pages are page cache). */
static long long counted(long long pss, long long pss_file)
{
    return pss - pss_file;
}

static long long read_ll(const char *path)
{
    FILE *f = fopen(path, "re");
    long long v = -1;

    if (f) {
        if (fscanf(f, "%lld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static void read_meminfo(struct mem *m)
{
    FILE *f = fopen("/proc/meminfo", "re");
    char key[64];
    long long v, total = 0, avail = 0;

    if (!f)
        return;
    while (fscanf(f, "%63s %lld%*[^\n]", key, &v) == 2) {
        if (!strcmp(key, "MemTotal:"))
            total = v;
        else if (!strcmp(key, "MemAvailable:"))
            avail = v;
        else if (!strcmp(key, "Slab:"))
            m->slab = v;
        else if (!strcmp(key, "SUnreclaim:"))
            m->sunreclaim = v;
        else if (!strcmp(key, "PageTables:"))
            m->pagetables = v;
        else if (!strcmp(key, "KernelStack:"))
            m->kernelstack = v;
        else if (!strcmp(key, "Percpu:"))
            m->percpu = v;
        else if (!strcmp(key, "Shmem:"))
            m->shmem = v;
    }
    fclose(f);
    /* Pages on the per-CPU free lists are free but not in MemFree: after
     * a burst of frees (the last run's deletes) they hold tens of MiB,
     * which the next allocations take without MemFree moving. */
    f = fopen("/proc/zoneinfo", "re");
    if (f) {
        char line[256];

        while (fgets(line, sizeof(line), f))
            if (sscanf(line, " count: %lld", &v) == 1)
                m->pcp += v * (sysconf(_SC_PAGESIZE) / 1024);
        fclose(f);
    }
    m->used = total - avail - m->pcp;
}

/* Rss, Pss and Pss_File (KiB) of a process; -1 if it is gone. */
static int read_smaps(pid_t pid, long long *rss, long long *pss, long long *pss_file)
{
    char path[64], line[256];
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return -1;
    *rss = *pss = *pss_file = 0;
    while (fgets(line, sizeof(line), f)) {
        long long v;

        if (sscanf(line, "Rss: %lld", &v) == 1)
            *rss = v;
        else if (sscanf(line, "Pss: %lld", &v) == 1)
            *pss = v;
        else if (sscanf(line, "Pss_File: %lld", &v) == 1)
            *pss_file = v;
    }
    fclose(f);
    return 0;
}

struct proc {
    pid_t pid, ppid;
    char comm[32];
};

static int compare_proc(const void *a, const void *b)
{
    pid_t x = ((const struct proc *)a)->pid, y = ((const struct proc *)b)->pid;

    return x < y ? -1 : x > y;
}

/* Every process on the host: pid, parent, comm. */
static struct proc *list_procs(size_t *ret_n)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    struct proc *p = NULL;
    size_t n = 0, cap = 0;

    if (!d)
        return NULL;
    while ((e = readdir(d))) {
        char path[64], buf[512], *close_paren, *open_paren;
        FILE *f;
        size_t len;

        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
        f = fopen(path, "re");
        if (!f)
            continue;
        len = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[len] = '\0';
        open_paren = strchr(buf, '(');
        close_paren = strrchr(buf, ')');
        if (!open_paren || !close_paren)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            p = realloc(p, cap * sizeof(*p));
        }
        p[n].pid = atoi(buf);
        snprintf(p[n].comm, sizeof(p[n].comm), "%.*s", (int)(close_paren - open_paren - 1),
                 open_paren + 1);
        /* "pid (comm) S ppid ..." */
        if (sscanf(close_paren + 1, " %*c %d", &p[n].ppid) != 1)
            continue;
        n++;
    }
    closedir(d);
    qsort(p, n, sizeof(*p), compare_proc);
    *ret_n = n;
    return p;
}

static bool descends_from(const struct proc *p, size_t n, pid_t pid, pid_t ancestor)
{
    for (int depth = 0; depth < 64 && pid > 1; depth++) {
        struct proc key = {.pid = pid}, *me = bsearch(&key, p, n, sizeof(*p), compare_proc);

        if (!me)
            return false;
        if (me->ppid == ancestor)
            return true;
        pid = me->ppid;
    }
    return false;
}

/* utime + stime + cutime + cstime of a process, in clock ticks. */
static long long proc_ticks(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut, st;
    long long cut, cst;
    FILE *f;
    size_t len;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return 0;
    len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &ut,
                     &st, &cut, &cst) != 4)
        return 0;
    return (long long)(ut + st) + cut + cst;
}

static void cpu_snapshot(pid_t daemon, struct cpu *c)
{
    size_t n = 0;
    struct proc *p = list_procs(&n);
    pid_t zygote = 0;
    FILE *f = fopen("/proc/stat", "re");

    memset(c, 0, sizeof(*c));
    if (f) {
        long long v[10] = {0};

        if (fscanf(f, "cpu %lld %lld %lld %lld %lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]) == 8) {
            c->busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
            c->all = c->busy + v[3] + v[4];
        }
        fclose(f);
    }
    c->daemon = proc_ticks(daemon);
    c->self = proc_ticks(getpid());
    for (size_t i = 0; i < n; i++)
        if (p[i].ppid == daemon && !strncmp(p[i].comm, "sandboxd-monito", 15))
            zygote = p[i].pid;
    if (zygote) {
        c->zygote = proc_ticks(zygote);
        for (size_t i = 0; i < n; i++)
            if (p[i].ppid == zygote && !strcmp(p[i].comm, "sbx-netpool"))
                c->netpool += proc_ticks(p[i].pid);
    }
    free(p);
}

/* Whether the process is in a sandbox's cgroup (CGPARENT/sb-…). */
static bool in_sandbox_cgroup(pid_t pid, const char *cgparent)
{
    char path[64], line[1024], needle[256];
    FILE *f;
    bool found = false;

    snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
    snprintf(needle, sizeof(needle), "/%s/sb-", cgparent);
    f = fopen(path, "re");
    if (!f)
        return false;
    while (!found && fgets(line, sizeof(line), f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static long count_fds(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *e;
    long n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

struct density {
    pid_t daemon;
    const char *cgparent;
    char memcg[PATH_MAX]; /* the sandboxes' parent memory cgroup, or "" */
    bool memcg_v2;
};

/* Finds the memory cgroup the daemon makes the sandboxes' under. */
static void find_memcg(struct density *d)
{
    char own[PATH_MAX];

    d->memcg[0] = '\0';
    if (memcg_dir_of(d->daemon, own, sizeof(own), &d->memcg_v2) == 0)
        snprintf(d->memcg, sizeof(d->memcg), "%s/%s", own, d->cgparent);
}

static void mem_sample(struct density *d, long count, struct mem *m)
{
    size_t n = 0;
    struct proc *p = list_procs(&n);
    char path[PATH_MAX + 64];

    memset(m, 0, sizeof(*m));
    m->count = count;
    read_meminfo(m);
    for (size_t i = 0; i < n; i++) {
        long long rss, pss, pss_file;

        if (p[i].pid == d->daemon) {
            if (read_smaps(p[i].pid, &rss, &pss, &pss_file) == 0) {
                m->daemon_rss = rss;
                m->daemon_pss = pss;
                m->daemon_pss_file = pss_file;
            }
            m->daemon_fds = count_fds(p[i].pid);
            continue;
        }
        if (!descends_from(p, n, p[i].pid, d->daemon))
            continue;
        if (read_smaps(p[i].pid, &rss, &pss, &pss_file) < 0)
            continue;
        if (in_sandbox_cgroup(p[i].pid, d->cgparent)) {
            m->sandbox_pss += pss;
            m->sandbox_pss_file += pss_file;
            m->sandbox_procs++;
        } else {
            m->helpers_pss += pss;
            m->helpers_pss_file += pss_file;
            m->helpers++;
            m->monitors += !strncmp(p[i].comm, "sandboxd-monito", 15);
        }
    }
    free(p);
    m->cg_usage = m->cg_kmem = -1;
    if (d->memcg[0]) {
        long long v;

        snprintf(path, sizeof(path), "%s/%s", d->memcg,
                 d->memcg_v2 ? "memory.current" : "memory.usage_in_bytes");
        if ((v = read_ll(path)) >= 0)
            m->cg_usage = v / 1024;
        if (!d->memcg_v2) {
            snprintf(path, sizeof(path), "%s/memory.kmem.usage_in_bytes", d->memcg);
            if ((v = read_ll(path)) >= 0)
                m->cg_kmem = v / 1024;
        }
    }
}

/* The kernel's slab caches (read_slabs(), kernel.h): bytes in use per
 * cache, to say what a sandbox's unreclaimable kernel memory is made of. */
static int compare_slab_desc(const void *a, const void *b)
{
    long long x = ((const struct slab *)a)->bytes, y = ((const struct slab *)b)->bytes;

    return x > y ? -1 : x < y;
}

/* Prints the caches that grew most from BEFORE to AFTER, per sandbox, and
 * writes them all to DIR/density-slab.txt. */
static void report_slabs(const struct slab *before, size_t nb, struct slab *after, size_t na,
                         long count)
{
    char path[PATH_MAX];
    FILE *f = NULL;

    if (!after || count <= 0)
        return;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (!strcmp(after[i].name, before[j].name)) {
                after[i].bytes -= before[j].bytes;
                break;
            }
    qsort(after, na, sizeof(*after), compare_slab_desc);
    if (samples_dir) {
        snprintf(path, sizeof(path), "%s/density-slab.txt", samples_dir);
        f = fopen(path, "we");
    }
    printf("%-22s", "density-slab");
    for (size_t i = 0; i < na; i++) {
        if (f)
            fprintf(f, "%s %.2f\n", after[i].name, after[i].bytes / 1024.0 / count);
        if (i < 8)
            printf(" %s=%.0fKiB", after[i].name, after[i].bytes / 1024.0 / count);
    }
    printf(" (growth of the largest slab caches, per sandbox)\n");
    if (f)
        fclose(f);
}

/* ---- --density: making, loading, deleting ---- */

#define GROUPS 100 /* tag "group": g0 … g99, for the listing with a tag filter */

struct create_thread {
    pthread_t thread;
    struct client *c;
    char (*ids)[ID_MAX];
    uint64_t *latency; /* per sandbox, create → exec result */
    atomic_long *next;
    long end;
    int timeout_s;
};

static void *create_some(void *arg)
{
    struct create_thread *t = arg;
    char body[256];

    while (!atomic_load(&failed)) {
        long i = atomic_fetch_add(t->next, 1);
        uint64_t t0;

        if (i >= t->end)
            break;
        snprintf(body, sizeof(body),
                 "{\"image\":\"busybox\",\"timeout_s\":%d,"
                 "\"tags\":{\"bench\":\"density\",\"group\":\"g%ld\"}}",
                 t->timeout_s, i % GROUPS);
        t0 = now_ns();
        if (sandbox_create(t->c, body, t->ids[i]) < 0) {
            t->ids[i][0] = '\0';
            fail("sandbox %ld: %s", i + 1, t->c->err);
            break;
        }
        if (exec_true(t->c, t->ids[i]) < 0) {
            fail("sandbox %ld (%s): %s", i + 1, t->ids[i], t->c->err);
            break;
        }
        t->latency[i] = now_ns() - t0;
    }
    return NULL;
}

enum kind { K_GET, K_EXEC, K_WAIT, K_LIST, K_HEALTH, K_EXEC_WAIT, K_COUNT };
static const char *const kind_names[K_COUNT] = {"get",  "exec",   "wait",
                                                "list", "health", "exec+wait"};

struct load_thread {
    pthread_t thread;
    struct client c;
    char (*ids)[ID_MAX];
    long n;
    uint64_t seed;
    uint64_t end_ns;
    pthread_barrier_t *start;
    double think_ms; /* mean pause between requests (uniform 0 … 2×) */
    struct vec latency[K_COUNT];
    long errors[K_COUNT];
};

static atomic_long load_errors;
static pthread_mutex_t load_err_lock = PTHREAD_MUTEX_INITIALIZER;
static char load_first_error[1024];

static void load_error(struct load_thread *t, enum kind k)
{
    t->errors[k]++;
    if (atomic_fetch_add(&load_errors, 1) == 0) {
        pthread_mutex_lock(&load_err_lock);
        snprintf(load_first_error, sizeof(load_first_error), "%s", t->c.err);
        pthread_mutex_unlock(&load_err_lock);
    }
}

static uint64_t next_random(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

/* One client of the mix: 40% GET a sandbox, 20% exec /bin/true + wait,
 * 20% list the running sandboxes of one tag group (~N/100), 20% health. */
static void *load_client(void *arg)
{
    struct load_thread *t = arg;
    char path[256], pid[ID_MAX];

    /* Connected before the window opens. */
    if (call(&t->c, "GET", "/v1/health", NULL, NULL) < 0)
        load_error(t, K_HEALTH);
    pthread_barrier_wait(t->start); /* all connected */
    pthread_barrier_wait(t->start); /* the window is set */
    while (now_ns() < t->end_ns && atomic_load(&load_errors) < LOAD_MAX_ERRORS) {
        uint64_t r, t0, t1;
        const char *id;
        unsigned pick;

        if (t->think_ms > 0)
            usleep((useconds_t)((double)(next_random(&t->seed) % 2001) * t->think_ms));
        r = next_random(&t->seed);
        t0 = now_ns();
        id = t->ids[(r >> 8) % (uint64_t)t->n];
        pick = (unsigned)(r % 100);

        if (pick < 40) {
            snprintf(path, sizeof(path), "/v1/sandboxes/%s", id);
            if (call(&t->c, "GET", path, NULL, NULL) < 0)
                load_error(t, K_GET);
            else
                vec_push(&t->latency[K_GET], now_ns() - t0);
        } else if (pick < 60) {
            if (exec_start(&t->c, id, pid) < 0) {
                load_error(t, K_EXEC);
                continue;
            }
            t1 = now_ns();
            vec_push(&t->latency[K_EXEC], t1 - t0);
            if (exec_wait(&t->c, id, pid) < 0) {
                load_error(t, K_WAIT);
                continue;
            }
            vec_push(&t->latency[K_WAIT], now_ns() - t1);
            vec_push(&t->latency[K_EXEC_WAIT], now_ns() - t0);
        } else if (pick < 80) {
            snprintf(path, sizeof(path), "/v1/sandboxes?tag.group=g%u",
                     (unsigned)((r >> 32) % GROUPS));
            if (call(&t->c, "GET", path, NULL, NULL) < 0)
                load_error(t, K_LIST);
            else
                vec_push(&t->latency[K_LIST], now_ns() - t0);
        } else {
            if (call(&t->c, "GET", "/v1/health", NULL, NULL) < 0)
                load_error(t, K_HEALTH);
            else
                vec_push(&t->latency[K_HEALTH], now_ns() - t0);
        }
    }
    return NULL;
}

struct delete_thread {
    pthread_t thread;
    struct client *c;
    char (*ids)[ID_MAX];
    atomic_long *next;
    long n;
    struct vec latency;
    long errors;
    char err[1024];
};

static void *delete_some(void *arg)
{
    struct delete_thread *t = arg;

    for (;;) {
        long i = atomic_fetch_add(t->next, 1);
        uint64_t t0;

        if (i >= t->n)
            break;
        if (!t->ids[i][0])
            continue;
        t0 = now_ns();
        if (sandbox_delete(t->c, t->ids[i]) < 0) {
            if (!t->errors++)
                snprintf(t->err, sizeof(t->err), "%s", t->c->err);
            continue;
        }
        vec_push(&t->latency, now_ns() - t0);
    }
    return NULL;
}

/* K clients on the N idle sandboxes for T s; rows PREFIX<kind>. */
static int run_load(char (*ids)[ID_MAX], long made, int load_clients, double seconds,
                    double think_ms, const char *prefix)
{
    struct load_thread *t = calloc((size_t)load_clients, sizeof(*t));
    struct vec all = {0};
    pthread_barrier_t start;
    uint64_t t0;
    long total = 0, errors = 0;
    char extra[160], name[64];
    int status = 0;

    atomic_store(&load_errors, 0);
    pthread_barrier_init(&start, NULL, (unsigned)load_clients + 1);
    for (int i = 0; i < load_clients; i++) {
        client_init(&t[i].c);
        t[i].ids = ids;
        t[i].n = made;
        t[i].seed = 0x9e3779b97f4a7c15ULL * (uint64_t)(i + 1);
        t[i].start = &start;
        t[i].think_ms = think_ms;
        t[i].end_ns = UINT64_MAX;
        if (pthread_create(&t[i].thread, NULL, load_client, &t[i]) != 0) {
            fprintf(stderr, "sbx-bench-load: pthread_create: %s\n", strerror(errno));
            exit(1);
        }
    }
    /* Every client connects first (one untimed request); the window
     * starts when all have, and they start together. */
    pthread_barrier_wait(&start);
    t0 = now_ns();
    for (int i = 0; i < load_clients; i++)
        t[i].end_ns = t0 + (uint64_t)(seconds * 1e9);
    pthread_barrier_wait(&start);
    for (int i = 0; i < load_clients; i++)
        pthread_join(t[i].thread, NULL);
    for (int k = 0; k < K_COUNT; k++) {
        struct vec v = {0};
        long e = 0;

        for (int i = 0; i < load_clients; i++) {
            vec_append(&v, &t[i].latency[k]);
            e += t[i].errors[k];
        }
        if (k != K_EXEC_WAIT) {
            vec_append(&all, &v);
            total += (long)v.n;
            errors += e;
        }
        snprintf(extra, sizeof(extra), "errors=%ld", e);
        snprintf(name, sizeof(name), "%s%s", prefix, kind_names[k]);
        report(name, &v, -1, extra);
        free(v.v);
    }
    snprintf(extra, sizeof(extra), "errors=%ld clients=%d sandboxes=%ld window=%.0fs think=%.0fms",
             errors, load_clients, made, seconds, think_ms);
    snprintf(name, sizeof(name), "%sall", prefix);
    report(name, &all, (double)total / seconds, extra);
    free(all.v);
    if (errors) {
        fprintf(stderr, "sbx-bench-load: %s: %ld failed requests; the first: %s\n", prefix, errors,
                load_first_error);
        printf("%-22s %ld failed requests; the first: %s\n", prefix, errors, load_first_error);
        status = 1;
    }
    for (int i = 0; i < load_clients; i++) {
        client_free(&t[i].c);
        for (int k = 0; k < K_COUNT; k++)
            free(t[i].latency[k].v);
    }
    pthread_barrier_destroy(&start);
    free(t);
    return status;
}

/* KiB the daemon, its helpers and the kernel hold (counted PSS, the
 * kernel's unreclaimable parts). */
static long long attributable(const struct mem *m)
{
    return counted(m->daemon_pss, m->daemon_pss_file) +
           counted(m->helpers_pss, m->helpers_pss_file) + m->sunreclaim + m->pagetables +
           m->kernelstack + m->percpu;
}

static void print_memory(const char *name, const struct mem *m0, const struct mem *m, long n)
{
    long long d_used = m->used - m0->used;
    long long d_sandbox = counted(m->sandbox_pss, m->sandbox_pss_file) -
                          counted(m0->sandbox_pss, m0->sandbox_pss_file);
    long long d_helpers = counted(m->helpers_pss, m->helpers_pss_file) -
                          counted(m0->helpers_pss, m0->helpers_pss_file);
    long long d_daemon =
        counted(m->daemon_pss, m->daemon_pss_file) - counted(m0->daemon_pss, m0->daemon_pss_file);
    long long d_kernel = (m->sunreclaim - m0->sunreclaim) + (m->pagetables - m0->pagetables) +
                         (m->kernelstack - m0->kernelstack) + (m->percpu - m0->percpu);
    double per = n ? (double)(d_used - d_sandbox) / n : 0;

    printf("%-22s n=%ld beyond=%.0fKiB monitors=%.0fKiB daemon=%.0fKiB kernel=%.0fKiB "
           "other=%.0fKiB sandbox-procs=%.0fKiB used=%.0fKiB (per sandbox; total used +%.1f MiB, "
           "%ld monitors, %ld sandbox processes, daemon %ld fds)\n",
           name, n, per, n ? (double)d_helpers / n : 0, n ? (double)d_daemon / n : 0,
           n ? (double)d_kernel / n : 0,
           n ? (double)(d_used - d_sandbox - d_helpers - d_daemon - d_kernel) / n : 0,
           n ? (double)d_sandbox / n : 0, n ? (double)d_used / n : 0, (double)d_used / 1024,
           m->monitors, m->sandbox_procs, m->daemon_fds);
    fflush(stdout);
}

static int run_density(struct density *d, long n, long step, int clients, int load_clients,
                       double seconds, double settle_s, double think_ms)
{
    char(*ids)[ID_MAX] = calloc((size_t)n, ID_MAX);
    uint64_t *latency = calloc((size_t)n, sizeof(*latency));
    struct client *cl = calloc((size_t)clients, sizeof(*cl));
    struct mem m0, m, peak;
    struct slab *slabs0 = NULL, *slabs = NULL;
    size_t n_slabs0 = 0, n_slabs = 0;
    struct vec create_lat = {0};
    FILE *tsv = NULL;
    atomic_long next = 0;
    long made = 0;
    int status = 0;
    uint64_t t_start;
    char path[PATH_MAX];

    find_memcg(d);
    for (int i = 0; i < clients; i++)
        client_init(&cl[i]);
    if (samples_dir) {
        snprintf(path, sizeof(path), "%s/density-memory.tsv", samples_dir);
        tsv = fopen(path, "we");
        if (!tsv)
            fprintf(stderr, "sbx-bench-load: %s: %s\n", path, strerror(errno));
    }
    if (tsv)
        fputs(mem_header, tsv);

    usleep((useconds_t)(settle_s * 1e6));
    mem_sample(d, 0, &m0);
    slabs0 = read_slabs(&n_slabs0);
    peak = m0;
    if (tsv)
        mem_print(tsv, &m0);

    /* ---- make N, S at a time, the memory after each step ---- */
    t_start = now_ns();
    while (made < n && !atomic_load(&failed)) {
        long end = made + step < n ? made + step : n;
        struct create_thread *t = calloc((size_t)clients, sizeof(*t));

        for (int i = 0; i < clients; i++) {
            t[i] = (struct create_thread){.c = &cl[i],
                                          .ids = ids,
                                          .latency = latency,
                                          .next = &next,
                                          .end = end,
                                          .timeout_s = 3600};
            pthread_create(&t[i].thread, NULL, create_some, &t[i]);
        }
        for (int i = 0; i < clients; i++)
            pthread_join(t[i].thread, NULL);
        free(t);
        /* Each thread's last take went past the step's end. */
        atomic_store(&next, end);
        /* What was made before a failure is made: count the ids. */
        while (made < end && ids[made][0] && latency[made])
            made++;
        if (atomic_load(&failed)) {
            /* Ids past a gap were made too: keep them for the delete. */
            for (long i = made; i < end; i++)
                if (ids[i][0] && !latency[i])
                    fprintf(stderr, "sbx-bench-load: %s: made but its exec failed\n", ids[i]);
            break;
        }
        usleep((useconds_t)(settle_s * 1e6));
        mem_sample(d, made, &peak);
        free(slabs);
        slabs = read_slabs(&n_slabs);
        if (tsv) {
            mem_print(tsv, &peak);
            fflush(tsv);
        }
        fprintf(stderr, "sbx-bench-load: %ld sandboxes: used +%.1f MiB, %ld monitors\n", made,
                (peak.used - m0.used) / 1024.0, peak.monitors);
    }
    {
        double secs = (double)(now_ns() - t_start) / 1e9;
        char extra[128];

        for (long i = 0; i < made; i++)
            vec_push(&create_lat, latency[i]);
        snprintf(extra, sizeof(extra), "clients=%d (create+exec, sandboxes kept; %.1f s in all)",
                 clients, secs);
        report("density-create", &create_lat, (double)made / secs, extra);
    }
    if (atomic_load(&failed)) {
        fprintf(stderr, "sbx-bench-load: density: failed after %ld of %ld sandboxes: %s\n", made, n,
                fail_msg);
        printf("%-22s failed after %ld of %ld sandboxes: %s\n", "density", made, n, fail_msg);
        status = 1;
    }
    if (peak.count > 0) {
        print_memory("density-memory", &m0, &peak, peak.count);
        report_slabs(slabs0, n_slabs0, slabs, n_slabs, peak.count);
    }
    free(slabs0);
    free(slabs);

    /* ---- K clients on the N idle sandboxes ---- */
    if (made > 0 && seconds > 0 && !status) {
        status |= run_load(ids, made, load_clients, seconds, 0, "load-");
        /* The same clients pausing between requests, as agents do. */
        if (think_ms > 0)
            status |= run_load(ids, made, load_clients, seconds, think_ms, "paced-load-");

        /* The unfiltered listing of every sandbox, one client, for scale. */
        {
            struct vec v = {0};
            char extra2[64];

            for (int i = 0; i < 20; i++) {
                uint64_t s = now_ns();

                if (call(&cl[0], "GET", "/v1/sandboxes", NULL, NULL) < 0) {
                    fprintf(stderr, "sbx-bench-load: %s\n", cl[0].err);
                    status = 1;
                    break;
                }
                vec_push(&v, now_ns() - s);
            }
            snprintf(extra2, sizeof(extra2), "(%ld records, %zu bytes)", made, cl[0].len);
            report("list-all", &v, -1, extra2);
            free(v.v);
        }
    }

    /* ---- delete them all, C at a time ---- */
    {
        struct delete_thread *t = calloc((size_t)clients, sizeof(*t));
        struct vec v = {0};
        atomic_long dnext = 0;
        long errors = 0, last = n;
        uint64_t t0 = now_ns();
        double secs;
        char extra[64];

        /* Everything with an id: what a failure left too. */
        while (last > 0 && !ids[last - 1][0])
            last--;
        for (int i = 0; i < clients; i++) {
            t[i] = (struct delete_thread){.c = &cl[i], .ids = ids, .next = &dnext, .n = last};
            pthread_create(&t[i].thread, NULL, delete_some, &t[i]);
        }
        for (int i = 0; i < clients; i++) {
            pthread_join(t[i].thread, NULL);
            vec_append(&v, &t[i].latency);
            if (t[i].errors && !errors)
                fprintf(stderr, "sbx-bench-load: delete: %s\n", t[i].err);
            errors += t[i].errors;
            free(t[i].latency.v);
        }
        secs = (double)(now_ns() - t0) / 1e9;
        snprintf(extra, sizeof(extra), "errors=%ld clients=%d (%.1f s in all)", errors, clients,
                 secs);
        report("delete", &v, (double)v.n / secs, extra);
        free(v.v);
        free(t);
        if (errors)
            status = 1;
    }

    /* ---- the memory must come back: wait (up to 30 s) for the monitors
     * to go and the kernel's deferred frees (network namespaces are
     * dismantled by a work queue) ---- */
    if (made > 0) {
        long long peak_d = peak.used - m0.used, left = 0, left_own = 0, allowed;
        bool back = false;

        allowed = peak_d / 10 > 32 * 1024 ? peak_d / 10 : 32 * 1024;
        for (int i = 0; i < 30 && !back; i++) {
            sleep(1);
            mem_sample(d, 0, &m);
            left = m.used - m0.used;
            /* What the daemon, its helpers and the kernel still hold:
             * unlike used, not moved by other processes on the host. */
            left_own = attributable(&m) - attributable(&m0);
            back = m.monitors <= m0.monitors && m.sandbox_procs == 0 &&
                   (left <= allowed || left_own <= allowed);
        }
        if (tsv) {
            fprintf(tsv, "# after deleting all: ");
            mem_print(tsv, &m);
        }
        printf("%-22s used=%+.1fMiB own=%+.1fMiB peak=%+.1fMiB monitors=%ld sandbox-procs=%ld "
               "daemon-fds=%ld (vs before: %ld, %ld, %ld) returned=%s (own: daemon, helpers and "
               "kernel; back when no monitor or sandbox process is left and used or own is "
               "within %.0f MiB)\n",
               "after-delete", left / 1024.0, left_own / 1024.0, peak_d / 1024.0, m.monitors,
               m.sandbox_procs, m.daemon_fds, m0.monitors, m0.sandbox_procs, m0.daemon_fds,
               back ? "yes" : "no", allowed / 1024.0);
    }
    if (tsv)
        fclose(tsv);
    for (int i = 0; i < clients; i++)
        client_free(&cl[i]);
    free(cl);
    free(ids);
    free(latency);
    free(create_lat.v);
    return status;
}

/* ---- main ---- */

/* Whether the comma-separated list has the word. */
static bool has_row(const char *list, const char *word)
{
    size_t len = strlen(word);

    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, word, len) && (p[len] == ',' || p[len] == '\0'))
            return true;
    return false;
}

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: sbx-bench-load --socket PATH --rate [-c C] [-t T] [--warmup W] [--daemon-pid PID]\n"
        "       sbx-bench-load --rate-cmd --name NAME [-c C] [-t T] -- CMD [ARG...]\n"
        "       sbx-bench-load --socket PATH --density N [--step S] [-c C] [--clients K]\n"
        "                      [-t T] --daemon-pid PID --cgroup-parent P\n"
        "options: --samples-dir DIR (every sample, ms, to DIR/ROW.ms), --settle S\n"
        "         (seconds before each memory sample, default 0.5), --rate-rows\n"
        "         net,block-network (which rate rows), --think-ms MS (after the closed\n"
        "         loop, load again with clients pausing 0 to 2×MS between requests)\n");
}

int main(int argc, char **argv)
{
    enum {
        O_SOCKET = 256,
        O_RATE,
        O_RATE_CMD,
        O_NAME,
        O_DENSITY,
        O_STEP,
        O_CLIENTS,
        O_PID,
        O_CGPARENT,
        O_SAMPLES,
        O_WARMUP,
        O_SETTLE,
        O_ROWS,
        O_THINK
    };
    static const struct option opts[] = {
        {"socket", required_argument, NULL, O_SOCKET},
        {"rate", no_argument, NULL, O_RATE},
        {"rate-cmd", no_argument, NULL, O_RATE_CMD},
        {"name", required_argument, NULL, O_NAME},
        {"density", required_argument, NULL, O_DENSITY},
        {"step", required_argument, NULL, O_STEP},
        {"clients", required_argument, NULL, O_CLIENTS},
        {"daemon-pid", required_argument, NULL, O_PID},
        {"cgroup-parent", required_argument, NULL, O_CGPARENT},
        {"samples-dir", required_argument, NULL, O_SAMPLES},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"settle", required_argument, NULL, O_SETTLE},
        {"rate-rows", required_argument, NULL, O_ROWS},
        {"think-ms", required_argument, NULL, O_THINK},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    enum { NONE, RATE, RATE_CMD, DENSITY } mode = NONE;
    int clients = 4, load_clients = 100, c, status = 0;
    long n = 1000, step = 100;
    double seconds = 10, warmup = 1, settle = 0.5, think = 0;
    const char *name = "peer", *rows = "net,block-network";
    struct density d = {.cgparent = NULL};

    while ((c = getopt_long(argc, argv, "+c:t:h", opts, NULL)) != -1) {
        switch (c) {
        case O_SOCKET:
            sock = optarg;
            break;
        case O_RATE:
            mode = RATE;
            break;
        case O_RATE_CMD:
            mode = RATE_CMD;
            break;
        case O_NAME:
            name = optarg;
            break;
        case O_DENSITY:
            mode = DENSITY;
            n = atol(optarg);
            break;
        case O_STEP:
            step = atol(optarg);
            break;
        case 'c':
            clients = atoi(optarg);
            break;
        case O_CLIENTS:
            load_clients = atoi(optarg);
            break;
        case 't':
            seconds = atof(optarg);
            break;
        case O_PID:
            d.daemon = (pid_t)atoi(optarg);
            break;
        case O_CGPARENT:
            d.cgparent = optarg;
            break;
        case O_SAMPLES:
            samples_dir = optarg;
            break;
        case O_WARMUP:
            warmup = atof(optarg);
            break;
        case O_SETTLE:
            settle = atof(optarg);
            break;
        case O_ROWS:
            rows = optarg;
            break;
        case O_THINK:
            think = atof(optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (mode == NONE || clients < 1 || load_clients < 1 || seconds < 0 || n < 1 || step < 1 ||
        (mode == RATE_CMD && optind >= argc) || (mode != RATE_CMD && optind < argc)) {
        usage(stderr);
        return 2;
    }
    if (samples_dir && mkdir(samples_dir, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "sbx-bench-load: %s: %s\n", samples_dir, strerror(errno));
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (mode == RATE)
        rate_daemon = d.daemon;
    if (mode == RATE_CMD) {
        status = rate_row(name, NULL, argv + optind, clients, warmup, seconds) < 0;
    } else if (mode == RATE) {
        if (has_row(rows, "net") &&
            rate_row("rate", "{\"image\":\"busybox\"}", NULL, clients, warmup, seconds) < 0)
            status = 1;
        if (!status && has_row(rows, "block-network") &&
            rate_row("rate-block-network", "{\"image\":\"busybox\",\"block_network\":true}", NULL,
                     clients, warmup, seconds) < 0)
            status = 1;
    } else {
        if (d.daemon <= 0 || !d.cgparent) {
            fprintf(stderr, "sbx-bench-load: --density needs --daemon-pid and --cgroup-parent\n");
            return 2;
        }
        if (kill(d.daemon, 0) < 0) {
            fprintf(stderr, "sbx-bench-load: no daemon with pid %d\n", (int)d.daemon);
            return 1;
        }
        status = run_density(&d, n, step, clients, load_clients, seconds, settle, think);
    }
    curl_global_cleanup();
    return status;
}
