/* test-monitor.c — sandboxd-monitor (daemon/monitor.c) driven as the daemon
 * drives it: the real binary (SBX_MONITOR), a spec.json, JSON lines over its
 * socket, and the files it leaves in the records directory
 * (daemon/monitor-proto.h).  Runs real sandboxes: root and the busybox image. */
#include "image.h"
#include "monitor-proto.h"
#include "sbx.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct sbx_image *busybox;
static const char *monitor_path;
static char cgroup_parent[64];
/* Every test's directories live under these, named by the runner's pid, so
 * that sweep() finds what a failed test (whose teardown never runs) left. */
static char run_root[64], state_root[64];

/* One test's monitor and the connection to it. */
static struct {
    char run[PATH_MAX], state[PATH_MAX], records[PATH_MAX + 128], id[64];
    pid_t pid; /* the monitor (our child: we are a subreaper) */
    bool reaped;
    int status;
    int fd; /* the connection, -1 when none */
    char *in;
    size_t in_len;
    json_t *events; /* received, not yet looked at */
    json_int_t seq;
} T;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double now_real(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static void rm_rf(const char *path)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "rm -rf --one-file-system '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", path);
}

static char *slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "re");
    char *buf = NULL;
    size_t len = 0, cap = 0, n;

    if (!f)
        return NULL;
    do {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 65536;
            buf = realloc(buf, cap + 1);
            ck_assert_ptr_nonnull(buf);
        }
        n = fread(buf + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    fclose(f);
    buf[len] = '\0';
    if (ret_len)
        *ret_len = len;
    return buf;
}

static char *rpath(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *rpath(const char *fmt, ...)
{
    static char bufs[4][PATH_MAX * 2];
    static int next;
    char *b = bufs[next++ % 4];
    int n = snprintf(b, PATH_MAX, "%s/", T.records);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(b + n, sizeof(bufs[0]) - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

static json_t *read_json(const char *path)
{
    json_error_t jerr;
    return json_load_file(path, 0, &jerr);
}

/* ---- fixtures ---- */

static void setup(void)
{
    static int counter;

    memset(&T, 0, sizeof(T));
    T.fd = -1;
    T.events = json_array();
    /* The monitor double-forks: as a subreaper we become its parent. */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    snprintf(T.run, sizeof(T.run), "%s/XXXXXX", run_root);
    ck_assert_ptr_nonnull(mkdtemp(T.run));
    snprintf(T.state, sizeof(T.state), "%s/%s", state_root, strrchr(T.run, '/') + 1);
    ck_assert_int_eq(mkdir(T.state, 0711), 0);
    /* The sandbox's root (an unprivileged host uid) must traverse these. */
    chmod(T.run, 0711);
    chmod(T.state, 0711);
    snprintf(T.id, sizeof(T.id), "mt%d-%d", (int)getpid(), counter++);
    snprintf(T.records, sizeof(T.records), "%s/records/%s", T.state, T.id);
}

static bool monitor_gone(int timeout_ms);

static void teardown(void)
{
    sbx_error err = {0};

    if (T.fd >= 0)
        close(T.fd);
    if (T.pid > 0 && !monitor_gone(0)) {
        kill(T.pid, SIGKILL);
        monitor_gone(5000);
    }
    if (sbx_sandbox_cleanup(T.run, T.state, cgroup_parent, T.id, &err) < 0)
        fprintf(stderr, "cleanup %s: %s\n", T.id, err.message);
    rm_rf(T.run);
    rm_rf(T.state);
    free(T.in);
    json_decref(T.events);
}

/* ---- the monitor ---- */

static json_t *spec_new(const char *const *entrypoint)
{
    json_t *layers = json_array(), *env = json_array(), *ep = json_null();

    for (char **l = busybox->layers; *l; l++)
        json_array_append_new(layers, json_string(*l));
    for (char **e = busybox->env; *e; e++)
        json_array_append_new(env, json_string(*e));
    if (entrypoint) {
        ep = json_array();
        for (const char *const *a = entrypoint; *a; a++)
            json_array_append_new(ep, json_string(*a));
    }
    return json_pack("{s:o,s:o,s:s,s:o,s:s,s:i,s:i,s:b,s:i,s:i,s:i,s:i,s:i,s:i,s:n,s:i,s:s}",
                     "image_layers", layers, "env", env, "workdir", "/", "entrypoint", ep,
                     "hostname", "mtest", "uid", 0, "gid", 0, "no_userns", 0, "memory_bytes", 0,
                     "pids_max", 0, "cpu_weight", 0, "cpu_quota_us", 0, "cpu_period_us", 0,
                     "timeout_s", 60, "idle_timeout_s", "output_limit", 4 * 1024 * 1024,
                     "cgroup_parent", cgroup_parent);
}

static char spec_path[PATH_MAX * 2], log_path[PATH_MAX * 2];

/* Writes the test's spec.json (taking spec); sets spec_path and log_path. */
static void spec_write(json_t *spec)
{
    snprintf(spec_path, sizeof(spec_path), "%s/records", T.state);
    mkdir(spec_path, 0700);
    ck_assert_int_eq(mkdir(T.records, 0700) == 0 || errno == EEXIST, 1);
    snprintf(spec_path, sizeof(spec_path), "%s/spec.json", T.records);
    snprintf(log_path, sizeof(log_path), "%s/monitor.log", T.records);
    ck_assert_int_eq(json_dump_file(spec, spec_path, JSON_COMPACT), 0);
    json_decref(spec);
}

/* Makes fd the child's fd 3 (inheritable), in a forked child. */
static void child_fd3(int fd)
{
    if (fd == 3)
        fcntl(3, F_SETFD, 0);
    else if (dup2(fd, 3) < 0)
        _exit(127);
}

/* Runs the monitor like the daemon does; returns its status line (parsed)
 * and stores the first process's exit status. */
static json_t *monitor_start(json_t *spec, int *ret_status)
{
    char line[8192];
    int out[2], status;
    size_t len = 0;
    ssize_t n;
    json_error_t jerr;
    json_t *st;
    pid_t pid;

    spec_write(spec);
    ck_assert_int_eq(pipe2(out, O_CLOEXEC), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        dup2(out[1], 1);
        execl(monitor_path, monitor_path, "--id", T.id, "--spec", spec_path, "--run-dir", T.run,
              "--state-dir", T.state, "--log", log_path, (char *)NULL);
        _exit(127);
    }
    close(out[1]);
    while ((n = read(out[0], line + len, sizeof(line) - 1 - len)) > 0)
        len += (size_t)n;
    close(out[0]);
    line[len] = '\0';
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status), "the monitor's first process died: %d", status);
    *ret_status = WEXITSTATUS(status);
    ck_assert_msg(len > 0 && line[len - 1] == '\n' && !strchr(line, '\n')[1],
                  "one status line wanted, got `%s`", line);
    st = json_loads(line, 0, &jerr);
    ck_assert_msg(json_is_object(st), "status line `%s`: %s", line, jerr.text);
    if (json_is_true(json_object_get(st, "ok"))) {
        ck_assert_int_eq(*ret_status, 0);
        T.pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
        ck_assert_int_gt(T.pid, 0);
    } else {
        ck_assert_int_eq(*ret_status, 1);
    }
    return st;
}

static void monitor_start_ok(json_t *spec)
{
    int status;
    json_t *st = monitor_start(spec, &status);

    ck_assert_msg(json_is_true(json_object_get(st, "ok")), "start failed: %s",
                  json_dumps(st, JSON_COMPACT));
    json_decref(st);
}

/* Reaps the monitor (we are its subreaper) within timeout_ms. */
static bool monitor_gone(int timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;

    if (T.reaped)
        return true;
    for (;;) {
        pid_t r = waitpid(T.pid, &T.status, WNOHANG);
        if (r == T.pid || (r < 0 && errno == ECHILD)) {
            T.reaped = true;
            return true;
        }
        if (now_ms() >= until)
            return false;
        sleep_ms(10);
    }
}

static void monitor_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (T.fd >= 0)
        close(T.fd);
    T.in_len = 0;
    T.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(T.fd, 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/monitors/%s.sock", T.run, T.id);
    ck_assert_msg(connect(T.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %s: %s",
                  sa.sun_path, strerror(errno));
}

static void send_raw(const char *data, size_t len)
{
    size_t done = 0;

    while (done < len) {
        ssize_t w = send(T.fd, data + done, len - done, MSG_NOSIGNAL);
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        done += (size_t)w;
    }
}

/* The next message, NULL on timeout; *ret_eof at EOF. */
static json_t *recv_msg(int timeout_ms, bool *ret_eof)
{
    int64_t until = now_ms() + timeout_ms;

    if (ret_eof)
        *ret_eof = false;
    for (;;) {
        char *nl = T.in ? memchr(T.in, '\n', T.in_len) : NULL;
        struct pollfd pf = {.fd = T.fd, .events = POLLIN};
        int64_t left;
        ssize_t n;

        if (nl) {
            json_error_t jerr;
            json_t *msg = json_loadb(T.in, (size_t)(nl - T.in), 0, &jerr);
            size_t used = (size_t)(nl - T.in) + 1;
            ck_assert_msg(json_is_object(msg), "the monitor sent `%.*s`", (int)(nl - T.in), T.in);
            memmove(T.in, T.in + used, T.in_len - used);
            T.in_len -= used;
            return msg;
        }
        left = until - now_ms();
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return NULL;
        T.in = realloc(T.in, T.in_len + 65536);
        ck_assert_ptr_nonnull(T.in);
        n = recv(T.fd, T.in + T.in_len, 65536, 0);
        if (n <= 0) {
            if (ret_eof)
                *ret_eof = true;
            return NULL;
        }
        T.in_len += (size_t)n;
    }
}

/* Sends a request (seq added) without waiting for its reply; returns seq. */
static json_int_t request_send(json_t *req)
{
    json_int_t seq = ++T.seq;
    char *text;

    json_object_set_new(req, "seq", json_integer(seq));
    text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    send_raw(text, strlen(text));
    send_raw("\n", 1);
    free(text);
    return seq;
}

/* The reply to request seq; events met on the way are kept for
 * wait_event(). */
static json_t *reply_of(json_int_t seq)
{
    for (;;) {
        json_t *msg = recv_msg(20000, NULL);
        ck_assert_msg(msg != NULL, "no reply to request %lld", (long long)seq);
        if (json_object_get(msg, "ev")) {
            json_array_append_new(T.events, msg);
            continue;
        }
        ck_assert_int_eq(json_integer_value(json_object_get(msg, "seq")), seq);
        return msg;
    }
}

/* Sends a request and returns the reply. */
static json_t *request(json_t *req)
{
    return reply_of(request_send(req));
}

static void request_ok(json_t *req)
{
    json_t *r = request(req);
    char *text = json_dumps(r, JSON_COMPACT);

    ck_assert_msg(json_is_true(json_object_get(r, "ok")), "request failed: %s", text);
    free(text);
    json_decref(r);
}

static void assert_error(json_t *reply, const char *code)
{
    char *text = json_dumps(reply, JSON_COMPACT);

    ck_assert_msg(json_is_false(json_object_get(reply, "ok")), "wanted an error, got %s", text);
    ck_assert_msg(
        !strcmp(json_string_value(json_object_get(json_object_get(reply, "error"), "code")) ?: "",
                code),
        "wanted %s, got %s", code, text);
    free(text);
    json_decref(reply);
}

/* Waits for event ev (with "id" id, when given); returns it. */
static json_t *wait_event(const char *ev, const char *id, int timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;

    for (;;) {
        size_t i;
        json_t *e;
        json_array_foreach(T.events, i, e)
        {
            if (strcmp(json_string_value(json_object_get(e, "ev")) ?: "", ev) ||
                (id && strcmp(json_string_value(json_object_get(e, "id")) ?: "", id)))
                continue;
            json_incref(e);
            json_array_remove(T.events, i);
            return e;
        }
        e = recv_msg((int)(until - now_ms() > 0 ? until - now_ms() : 0), NULL);
        ck_assert_msg(e != NULL, "no `%s` event for %s", ev, id ? id : "the sandbox");
        json_array_append_new(T.events, e);
    }
}

static json_t *exec_req(const char *id, const char *script)
{
    return json_pack("{s:s,s:s,s:[s,s,s]}", "op", "exec", "id", id, "argv", "sh", "-c", script);
}

static int exec_wait(const char *id, int timeout_ms)
{
    json_t *ev = wait_event("exit", id, timeout_ms);
    int rc = (int)json_integer_value(json_object_get(ev, "returncode"));

    json_decref(ev);
    return rc;
}

/* The stream as the daemon sees it: its segments in offset order. */
static char *read_stream(const char *proc, const char *stream, size_t *ret_len,
                         uint64_t *ret_lowest, size_t *ret_max_segment)
{
    char *dir = rpath("procs/%s", proc);
    unsigned long long starts[4096];
    size_t n = 0, len = 0, max_seg = 0, sl = strlen(stream);
    DIR *dh = opendir(dir);
    struct dirent *de;
    char *buf = malloc(1);

    /* No directory: no output yet (it is made with the first byte). */
    ck_assert_msg(dh || errno == ENOENT, "%s: %s", dir, strerror(errno));
    while (dh && (de = readdir(dh))) {
        char *end;
        if (strncmp(de->d_name, stream, sl) || de->d_name[sl] != '.' ||
            !(de->d_name[sl + 1] >= '0' && de->d_name[sl + 1] <= '9'))
            continue;
        ck_assert_uint_lt(n, 4096);
        starts[n++] = strtoull(de->d_name + sl + 1, &end, 10);
    }
    if (dh)
        closedir(dh);
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (starts[j] < starts[i]) {
                unsigned long long t = starts[i];
                starts[i] = starts[j];
                starts[j] = t;
            }
    for (size_t i = 0; i < n; i++) {
        size_t l;
        char *seg = slurp(rpath("procs/%s/%s.%llu", proc, stream, starts[i]), &l);
        ck_assert_ptr_nonnull(seg);
        /* Segments are contiguous. */
        if (i > 0)
            ck_assert_uint_eq(starts[i], starts[0] + len);
        buf = realloc(buf, len + l + 1);
        memcpy(buf + len, seg, l);
        len += l;
        if (l > max_seg)
            max_seg = l;
        free(seg);
    }
    buf[len] = '\0';
    if (ret_len)
        *ret_len = len;
    if (ret_lowest)
        *ret_lowest = n ? starts[0] : 0;
    if (ret_max_segment)
        *ret_max_segment = max_seg;
    return buf;
}

static void assert_stream(const char *proc, const char *stream, const char *want)
{
    char *got = read_stream(proc, stream, NULL, NULL, NULL);
    ck_assert_str_eq(got, want);
    free(got);
}

/* The first line of procs.ndjson about process proc that has key ("argv":
 * its start, "returncode": its exit), or NULL. */
static json_t *proc_line(const char *proc, const char *key)
{
    FILE *f = fopen(rpath("procs.ndjson"), "re");
    char *line = NULL;
    size_t cap = 0;
    json_t *found = NULL;

    while (f && !found && getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (j && !strcmp(json_string_value(json_object_get(j, "process_id")) ?: "", proc) &&
            json_object_get(j, key))
            found = json_incref(j);
        json_decref(j);
    }
    free(line);
    if (f)
        fclose(f);
    return found;
}

static int proc_returncode(const char *proc)
{
    json_t *j = proc_line(proc, "returncode");
    int rc;

    ck_assert_msg(j != NULL, "no exit line for %s", proc);
    ck_assert_msg(json_is_integer(json_object_get(j, "returncode")), "%s: no returncode", proc);
    rc = (int)json_integer_value(json_object_get(j, "returncode"));
    json_decref(j);
    return rc;
}

/* How many lines of procs.ndjson record the end of a process's stream: its
 * exit line's "eof" (it ended before the exit) or a line of its own. */
static int ended_lines(const char *proc, const char *stream)
{
    FILE *f = fopen(rpath("procs.ndjson"), "re");
    char *line = NULL;
    size_t cap = 0;
    int n = 0;

    while (f && getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL), *v;
        size_t i;
        if (j && !strcmp(json_string_value(json_object_get(j, "process_id")) ?: "", proc))
            json_array_foreach(json_object_get(j, "eof"), i, v)
            {
                if (json_is_string(v) && !strcmp(json_string_value(v), stream))
                    n++;
            }
        json_decref(j);
    }
    free(line);
    if (f)
        fclose(f);
    return n;
}

static bool ended_on_disk(const char *proc, const char *stream)
{
    return ended_lines(proc, stream) > 0;
}

static void assert_sandbox_exit(int returncode, const char *reason)
{
    json_t *j = read_json(rpath("exit.json"));

    ck_assert_msg(j != NULL, "exit.json missing");
    ck_assert_int_eq(json_integer_value(json_object_get(j, "returncode")), returncode);
    ck_assert_str_eq(json_string_value(json_object_get(j, "finish_reason")), reason);
    ck_assert(json_is_real(json_object_get(j, "finished_at")));
    json_decref(j);
}

/* After the monitor has gone: it exited 0 and left nothing but records. */
static void assert_clean_exit(void)
{
    char path[PATH_MAX * 2], line[4096];
    FILE *f;

    ck_assert_msg(monitor_gone(15000), "the monitor is still running");
    ck_assert_msg(WIFEXITED(T.status) && WEXITSTATUS(T.status) == 0, "monitor status %d", T.status);
    snprintf(path, sizeof(path), "%s/monitors/%s.sock", T.run, T.id);
    ck_assert_msg(!exists(path), "%s left", path);
    snprintf(path, sizeof(path), "%s/sandboxes/%s", T.run, T.id);
    ck_assert_msg(!exists(path), "%s left", path);
    snprintf(path, sizeof(path), "%s/sandboxes/%s", T.state, T.id);
    ck_assert_msg(!exists(path), "%s left", path);
    ck_assert(exists(rpath("exit.json")));
    ck_assert(exists(rpath("events.ndjson")));
    /* Under the sanitizers, the monitor's reports land in its log. */
    {
        char *log = slurp(rpath("monitor.log"), NULL);
        ck_assert_ptr_nonnull(log);
        ck_assert_msg(!strstr(log, "Sanitizer") && !strstr(log, "runtime error"),
                      "the monitor's log: %s", log);
        free(log);
    }
    /* No cgroup of the sandbox in any hierarchy. */
    f = fopen("/proc/self/cgroup", "re");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f)) {
        char *ctrls = strchr(line, ':'), *cg, *tok, *save = NULL;
        if (!ctrls || !(cg = strchr(++ctrls, ':')))
            continue;
        *cg++ = '\0';
        cg[strcspn(cg, "\n")] = '\0';
        if (!*ctrls) {
            snprintf(path, sizeof(path), "/sys/fs/cgroup/unified%s/%s/%s", cg, cgroup_parent, T.id);
            ck_assert_msg(!exists(path), "%s left", path);
            snprintf(path, sizeof(path), "/sys/fs/cgroup%s/%s/%s", cg, cgroup_parent, T.id);
            ck_assert_msg(!exists(path), "%s left", path);
            continue;
        }
        for (tok = strtok_r(ctrls, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            const char *name = !strncmp(tok, "name=", 5) ? tok + 5 : tok;
            snprintf(path, sizeof(path), "/sys/fs/cgroup/%s%s/%s/%s", name, cg, cgroup_parent,
                     T.id);
            ck_assert_msg(!exists(path), "%s left", path);
        }
    }
    fclose(f);
    /* No mount of it on the host. */
    f = fopen("/proc/self/mountinfo", "re");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f))
        ck_assert_msg(!strstr(line, T.id), "mount left: %s", line);
    fclose(f);
}

static bool events_have(const char *event)
{
    char *text = slurp(rpath("events.ndjson"), NULL), *line, *save = NULL;
    bool found = false;

    ck_assert_ptr_nonnull(text);
    for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        json_error_t jerr;
        json_t *ev = json_loads(line, 0, &jerr);
        ck_assert_msg(json_is_object(ev), "events.ndjson line `%s`", line);
        ck_assert(json_is_real(json_object_get(ev, "at")));
        if (!strcmp(json_string_value(json_object_get(ev, "event")) ?: "", event))
            found = true;
        json_decref(ev);
    }
    free(text);
    return found;
}

static char *b64(const void *data, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *d = data;
    char *out = malloc(len / 3 * 4 + 5), *o = out;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < len ? (uint32_t)d[i + 1] << 8 : 0) |
                     (i + 2 < len ? d[i + 2] : 0);
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < len ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? tab[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* ---- tests ---- */

START_TEST(entrypoint_files_and_exit)
{
    const char *ep[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    json_t *mon, *info;

    monitor_start_ok(spec_new(ep));
    assert_clean_exit();
    assert_stream("entrypoint", "stdout", "out\n");
    assert_stream("entrypoint", "stderr", "err\n");
    ck_assert(ended_on_disk("entrypoint", "stdout"));
    ck_assert(ended_on_disk("entrypoint", "stderr"));
    ck_assert_int_eq(proc_returncode("entrypoint"), 3);
    assert_sandbox_exit(3, "exited");
    ck_assert(events_have("scheduled"));
    ck_assert(events_have("started"));
    ck_assert(events_have("finished"));
    mon = read_json(rpath("monitor.json"));
    ck_assert_int_eq(json_integer_value(json_object_get(mon, "pid")), T.pid);
    json_decref(mon);
    info = proc_line("entrypoint", "argv");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(info, "argv"), 2)),
                     "echo out; echo err >&2; exit 3");
    json_decref(info);
    ck_assert(exists(rpath("spec.json")));
}
END_TEST

START_TEST(bad_spec_and_failed_create)
{
    json_t *spec = spec_new(NULL), *st, *ex;
    const char *missing[] = {"/no/such/program", NULL};
    int status;

    /* A spec of the wrong shape: refused before anything starts. */
    json_object_set_new(spec, "image_layers", json_string("/x"));
    st = monitor_start(spec, &status);
    ck_assert_int_eq(status, 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(st, "error"), "code")),
                     "invalid_argument");
    json_decref(st);
    ck_assert(!exists(rpath("exit.json")));

    /* A sandbox that cannot be created: recorded as finished, "error". */
    st = monitor_start(spec_new(missing), &status);
    ck_assert_int_eq(status, 1);
    ck_assert(json_is_false(json_object_get(st, "ok")));
    ck_assert(json_is_string(json_object_get(json_object_get(st, "error"), "message")));
    json_decref(st);
    ex = read_json(rpath("exit.json"));
    ck_assert_ptr_nonnull(ex);
    ck_assert(json_is_null(json_object_get(ex, "returncode")));
    ck_assert_str_eq(json_string_value(json_object_get(ex, "finish_reason")), "error");
    json_decref(ex);
    ck_assert(events_have("error"));
}
END_TEST

START_TEST(exec_output_and_returncode)
{
    json_t *r, *procs, *info;
    size_t i;
    bool found = false;

    monitor_start_ok(spec_new(NULL));
    monitor_connect();
    request_ok(exec_req("pr-1", "echo hello; echo oops >&2; exit 7"));
    ck_assert_int_eq(exec_wait("pr-1", 10000), 7);
    /* The exit line is there before the event, and the output before it. */
    ck_assert_int_eq(proc_returncode("pr-1"), 7);
    assert_stream("pr-1", "stdout", "hello\n");
    assert_stream("pr-1", "stderr", "oops\n");
    ck_assert(ended_on_disk("pr-1", "stdout"));
    ck_assert(ended_on_disk("pr-1", "stderr"));
    /* Both ended before the exit: the exit line says so, no line of their own. */
    ck_assert_int_eq(ended_lines("pr-1", "stdout"), 1);
    ck_assert_int_eq(ended_lines("pr-1", "stderr"), 1);
    info = proc_line("pr-1", "argv");
    ck_assert_str_eq(json_string_value(json_object_get(info, "process_id")), "pr-1");
    ck_assert(json_is_false(json_object_get(info, "pty")));
    json_decref(info);

    /* stderr merged into stdout; stdout to /dev/null. */
    r = json_pack("{s:s,s:s,s:[s,s,s],s:s}", "op", "exec", "id", "pr-2", "argv", "sh", "-c",
                  "echo a; echo b >&2", "stderr", "stdout");
    request_ok(r);
    ck_assert_int_eq(exec_wait("pr-2", 10000), 0);
    assert_stream("pr-2", "stdout", "a\nb\n");
    ck_assert(ended_on_disk("pr-2", "stderr"));
    r = json_pack("{s:s,s:s,s:[s,s,s],s:s}", "op", "exec", "id", "pr-3", "argv", "sh", "-c",
                  "echo gone; echo kept >&2", "stdout", "devnull");
    request_ok(r);
    ck_assert_int_eq(exec_wait("pr-3", 10000), 0);
    assert_stream("pr-3", "stderr", "kept\n");
    assert_stream("pr-3", "stdout", "");

    /* A terminal. */
    r = json_pack("{s:s,s:s,s:[s,s,s],s:{s:i,s:i}}", "op", "exec", "id", "pr-tty", "argv", "sh",
                  "-c", "stty size; test -t 0 && echo tty", "pty", "rows", 33, "cols", 111);
    request_ok(r);
    ck_assert_int_eq(exec_wait("pr-tty", 10000), 0);
    {
        char *out = read_stream("pr-tty", "stdout", NULL, NULL, NULL);
        ck_assert_msg(strstr(out, "33 111") && strstr(out, "tty"), "pty output `%s`", out);
        free(out);
    }

    /* Errors. */
    assert_error(request(exec_req("pr-1", "true")), "invalid_argument");
    assert_error(request(json_pack("{s:s,s:s,s:[]}", "op", "exec", "id", "pr-x", "argv")),
                 "invalid_argument");
    assert_error(request(exec_req("../x", "true")), "invalid_argument");
    assert_error(request(json_pack("{s:s,s:s,s:i}", "op", "signal", "id", "nope", "signal", 9)),
                 "not_found");
    assert_error(request(json_pack("{s:s,s:s,s:[s]}", "op", "exec", "id", "pr-nx", "argv",
                                   "/no/such/program")),
                 "invalid_argument");

    r = request(json_pack("{s:s}", "op", "status"));
    ck_assert(json_is_true(json_object_get(r, "ok")));
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "running");
    procs = json_object_get(r, "processes");
    json_array_foreach(procs, i, info)
    {
        if (!strcmp(json_string_value(json_object_get(info, "id")), "pr-1")) {
            ck_assert_int_eq(json_integer_value(json_object_get(info, "returncode")), 7);
            found = true;
        }
    }
    ck_assert(found);
    json_decref(r);
    r = request(json_pack("{s:s}", "op", "stats"));
    ck_assert(json_is_true(json_object_get(r, "ok")));
    ck_assert(json_is_integer(json_object_get(json_object_get(r, "stats"), "memory_current")));
    json_decref(r);

    request_ok(json_pack("{s:s}", "op", "shutdown"));
    r = wait_event("finished", NULL, 15000);
    ck_assert_str_eq(json_string_value(json_object_get(r, "finish_reason")), "terminated");
    json_decref(r);
    assert_clean_exit();
    assert_sandbox_exit(137, "terminated");
}
END_TEST

/* The names in a directory, sorted, one per line ("" when it is empty). */
static char *dir_names(const char *path)
{
    struct dirent **list;
    int n = scandir(path, &list, NULL, alphasort);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);

    ck_assert_int_ge(n, 0);
    for (int i = 0; i < n; i++) {
        if (strcmp(list[i]->d_name, ".") && strcmp(list[i]->d_name, ".."))
            fprintf(f, "%s\n", list[i]->d_name);
        free(list[i]);
    }
    free(list);
    fclose(f);
    return out;
}

/* An exec's records are lines of procs.ndjson; its directory, for its
 * output, comes from procs/.next, made while the monitor was idle: it holds
 * exactly what one made from nothing holds, no leftover, and the next one
 * is made again; an exec without output makes no directory, a failed exec
 * leaves nothing behind. */
START_TEST(exec_records_made_ahead)
{
    char *names;
    json_t *j;

    monitor_start_ok(spec_new(NULL));
    monitor_connect();
    for (int i = 0; i < 200 && !exists(rpath("procs/.next/stderr.0")); i++)
        usleep(10000);
    ck_assert(exists(rpath("procs/.next/stderr.0")));
    request_ok(exec_req("pr-1", "echo hello"));
    ck_assert_int_eq(exec_wait("pr-1", 10000), 0);
    names = dir_names(rpath("procs/pr-1"));
    ck_assert_str_eq(names, "stderr.0\nstdout.0\n");
    free(names);
    assert_stream("pr-1", "stdout", "hello\n");
    assert_stream("pr-1", "stderr", "");
    ck_assert(ended_on_disk("pr-1", "stdout") && ended_on_disk("pr-1", "stderr"));
    /* No output: no directory, and both lines. */
    request_ok(exec_req("pr-quiet", "true"));
    ck_assert_int_eq(exec_wait("pr-quiet", 10000), 0);
    ck_assert(!exists(rpath("procs/pr-quiet")));
    j = proc_line("pr-quiet", "argv");
    ck_assert_ptr_nonnull(j);
    ck_assert(json_is_number(json_object_get(j, "started_at")));
    json_decref(j);
    ck_assert_int_eq(proc_returncode("pr-quiet"), 0);
    /* A stream that outlives its process's exit (a background child holds
     * it past the grace period) gets a line of its own when it ends. */
    request_ok(exec_req("pr-bg", "(sleep 1.5; echo late) & echo early"));
    ck_assert_int_eq(exec_wait("pr-bg", 10000), 0);
    ck_assert(!ended_on_disk("pr-bg", "stdout"));
    for (int i = 0; i < 400 && !ended_on_disk("pr-bg", "stdout"); i++)
        usleep(10000);
    ck_assert_int_eq(ended_lines("pr-bg", "stdout"), 1);
    assert_stream("pr-bg", "stdout", "early\nlate\n");
    for (int i = 0; i < 200 && !exists(rpath("procs/.next/stderr.0")); i++)
        usleep(10000);
    ck_assert(exists(rpath("procs/.next/stderr.0")));
    assert_error(request(json_pack("{s:s,s:s,s:[s]}", "op", "exec", "id", "pr-nx", "argv",
                                   "/no/such/program")),
                 "invalid_argument");
    ck_assert(!exists(rpath("procs/pr-nx")));
    ck_assert_ptr_null(proc_line("pr-nx", "argv"));
    names = dir_names(rpath("procs"));
    ck_assert_msg(!strcmp(names, ".next\npr-1\npr-bg\n") || !strcmp(names, "pr-1\npr-bg\n"),
                  "procs: %s", names);
    free(names);
    request_ok(json_pack("{s:s}", "op", "shutdown"));
    json_decref(wait_event("finished", NULL, 15000));
    assert_clean_exit();
}
END_TEST

START_TEST(exec_stdin_round_trip)
{
    char *d1 = b64("hello stdin\n", 12), *d2 = b64("more", 4);

    monitor_start_ok(spec_new(NULL));
    monitor_connect();
    request_ok(json_pack("{s:s,s:s,s:[s]}", "op", "exec", "id", "cat", "argv", "cat"));
    request_ok(json_pack("{s:s,s:s,s:s,s:b}", "op", "stdin", "id", "cat", "data", d1, "eof", 0));
    assert_error(request(json_pack("{s:s,s:s,s:s}", "op", "stdin", "id", "cat", "data", "@@@")),
                 "invalid_argument");
    assert_error(request(json_pack("{s:s,s:s,s:s}", "op", "stdin", "id", "nope", "data", d2)),
                 "not_found");
    request_ok(json_pack("{s:s,s:s,s:s,s:b}", "op", "stdin", "id", "cat", "data", d2, "eof", 1));
    ck_assert_int_eq(exec_wait("cat", 10000), 0);
    assert_stream("cat", "stdout", "hello stdin\nmore");
    assert_error(request(json_pack("{s:s,s:s,s:s}", "op", "stdin", "id", "cat", "data", d2)),
                 "failed_precondition");

    /* A big write does not block the monitor: 4 MiB to a reader that
     * counts them, while the monitor keeps answering. */
    {
        size_t len = 1024 * 1024;
        char *big = malloc(len), *enc;
        memset(big, 'x', len);
        /* 700 KiB is under the 1 MiB message limit once encoded. */
        enc = b64(big, 700 * 1024);
        request_ok(json_pack("{s:s,s:s,s:[s,s,s]}", "op", "exec", "id", "wc", "argv", "sh", "-c",
                             "sleep 1; wc -c"));
        for (int i = 0; i < 6; i++)
            request_ok(json_pack("{s:s,s:s,s:s}", "op", "stdin", "id", "wc", "data", enc));
        request_ok(json_pack("{s:s}", "op", "status"));
        request_ok(json_pack("{s:s,s:s,s:b}", "op", "stdin", "id", "wc", "eof", 1));
        ck_assert_int_eq(exec_wait("wc", 20000), 0);
        {
            char *out = read_stream("wc", "stdout", NULL, NULL, NULL);
            ck_assert_int_eq(atol(out), 6 * 700 * 1024);
            free(out);
        }
        free(enc);
        free(big);
    }
    free(d1);
    free(d2);
    request_ok(json_pack("{s:s}", "op", "terminate"));
    assert_clean_exit();
}
END_TEST

START_TEST(binary_output_intact)
{
    json_t *spec = spec_new(NULL);
    char cmd[PATH_MAX * 3], tmp[] = "/tmp/sbx-mtest-bin.XXXXXX", sum[128];
    char *data, *err;
    size_t len;
    int fd;
    FILE *p;

    json_object_set_new(spec, "output_limit", json_integer(8 * 1024 * 1024));
    monitor_start_ok(spec);
    monitor_connect();
    request_ok(exec_req("bin", "head -c 1048576 /dev/urandom > /tmp/b; sha256sum /tmp/b >&2; "
                               "cat /tmp/b"));
    ck_assert_int_eq(exec_wait("bin", 20000), 0);
    data = read_stream("bin", "stdout", &len, NULL, NULL);
    ck_assert_uint_eq(len, 1048576);
    fd = mkstemp(tmp);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
    close(fd);
    snprintf(cmd, sizeof(cmd), "sha256sum < %s", tmp);
    p = popen(cmd, "r");
    ck_assert_ptr_nonnull(fgets(sum, sizeof(sum), p));
    pclose(p);
    unlink(tmp);
    err = read_stream("bin", "stderr", NULL, NULL, NULL);
    ck_assert_msg(!strncmp(err, sum, 64), "inside %s, outside %s", err, sum);
    free(err);
    free(data);
    request_ok(json_pack("{s:s}", "op", "terminate"));
    assert_clean_exit();
}
END_TEST

START_TEST(output_rotation)
{
    json_t *spec = spec_new(NULL);
    const size_t limit = 64 * 1024;
    size_t len, max_seg, total = 0, want_len = 0;
    uint64_t lowest;
    char *data, *want = malloc(2 * 1024 * 1024);

    json_object_set_new(spec, "output_limit", json_integer((json_int_t)limit));
    monitor_start_ok(spec);
    monitor_connect();
    request_ok(exec_req("rot", "seq 1 150000"));
    ck_assert_int_eq(exec_wait("rot", 20000), 0);
    for (int i = 1; i <= 150000; i++)
        want_len += (size_t)sprintf(want + want_len, "%d\n", i);
    data = read_stream("rot", "stdout", &len, &lowest, &max_seg);
    total = lowest + len;
    ck_assert_uint_eq(total, want_len);
    ck_assert_uint_gt(lowest, 0);
    ck_assert_uint_le(len, limit);
    ck_assert_uint_ge(len, limit / 2);
    ck_assert_uint_le(max_seg, limit / 4);
    ck_assert(!memcmp(data, want + lowest, len));
    free(data);
    free(want);
    request_ok(json_pack("{s:s}", "op", "terminate"));
    assert_clean_exit();
}
END_TEST

START_TEST(exec_timeout)
{
    json_t *r, *procs;
    int64_t t0;

    monitor_start_ok(spec_new(NULL));
    monitor_connect();
    t0 = now_ms();
    request_ok(json_pack("{s:s,s:s,s:[s,s],s:i}", "op", "exec", "id", "slow", "argv", "sleep",
                         "100", "timeout_s", 1));
    ck_assert_int_eq(exec_wait("slow", 10000), 137);
    ck_assert_int_ge(now_ms() - t0, 900);
    ck_assert_int_le(now_ms() - t0, 5000);
    r = request(json_pack("{s:s}", "op", "status"));
    ck_assert_str_eq(json_string_value(json_object_get(r, "state")), "running");
    procs = json_object_get(r, "processes");
    ck_assert_int_eq(json_array_size(procs), 1);
    json_decref(r);
    request_ok(exec_req("after", "exit 0"));
    ck_assert_int_eq(exec_wait("after", 10000), 0);
    request_ok(json_pack("{s:s}", "op", "terminate"));
    assert_clean_exit();
    assert_sandbox_exit(137, "terminated");
}
END_TEST

START_TEST(sandbox_timeout)
{
    json_t *spec = spec_new(NULL);
    int64_t t0 = now_ms();

    json_object_set_new(spec, "timeout_s", json_integer(1));
    monitor_start_ok(spec);
    assert_clean_exit();
    ck_assert_int_ge(now_ms() - t0, 900);
    assert_sandbox_exit(137, "timeout");
}
END_TEST

START_TEST(idle_timeout)
{
    json_t *spec = spec_new(NULL), *ex;
    double t0 = now_real();

    json_object_set_new(spec, "idle_timeout_s", json_integer(1));
    monitor_start_ok(spec);
    monitor_connect();
    /* A running exec is activity: idle counts from its end. */
    request_ok(exec_req("busy", "sleep 2"));
    ck_assert_int_eq(exec_wait("busy", 10000), 0);
    json_decref(wait_event("finished", NULL, 10000));
    assert_clean_exit();
    assert_sandbox_exit(137, "idle_timeout");
    ex = read_json(rpath("exit.json"));
    ck_assert_msg(json_real_value(json_object_get(ex, "finished_at")) - t0 >= 2.8,
                  "idle timeout after %.2f s",
                  json_real_value(json_object_get(ex, "finished_at")) - t0);
    json_decref(ex);
}
END_TEST

START_TEST(terminate_op)
{
    const char *ep[] = {"sleep", "100", NULL};
    json_t *ev;

    monitor_start_ok(spec_new(ep));
    monitor_connect();
    request_ok(json_pack("{s:s}", "op", "terminate"));
    ev = wait_event("finished", NULL, 10000);
    ck_assert_int_eq(json_integer_value(json_object_get(ev, "returncode")), 137);
    ck_assert_str_eq(json_string_value(json_object_get(ev, "finish_reason")), "terminated");
    json_decref(ev);
    assert_clean_exit();
    assert_sandbox_exit(137, "terminated");
    ck_assert_int_eq(proc_returncode("entrypoint"), 137);
    ck_assert(ended_on_disk("entrypoint", "stdout"));
}
END_TEST

START_TEST(out_of_memory)
{
    const char *ep[] = {"sh", "-c", "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done", NULL};
    json_t *spec = spec_new(ep);

    json_object_set_new(spec, "memory_bytes", json_integer(32 * 1024 * 1024));
    monitor_start_ok(spec);
    assert_clean_exit();
    assert_sandbox_exit(137, "oom");
    ck_assert_int_eq(proc_returncode("entrypoint"), 137);
}
END_TEST

START_TEST(exec_into_finished_sandbox)
{
    const char *ep[] = {"sleep", "100", NULL};
    const char *two = "{\"seq\":1,\"op\":\"terminate\"}\n"
                      "{\"seq\":2,\"op\":\"exec\",\"id\":\"late\",\"argv\":[\"true\"]}\n";
    json_t *r;

    monitor_start_ok(spec_new(ep));
    monitor_connect();
    T.seq = 2;
    send_raw(two, strlen(two));
    r = recv_msg(10000, NULL);
    ck_assert(json_is_true(json_object_get(r, "ok")));
    json_decref(r);
    r = recv_msg(10000, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(r, "seq")), 2);
    assert_error(r, "failed_precondition");
    json_decref(wait_event("finished", NULL, 10000));
    assert_clean_exit();
}
END_TEST

/* ---- started connected (--client-fd), and by the zygote ---- */

/* pid's parent, 0 when pid is gone. */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[1024], *close_paren;
    FILE *f;
    size_t n;
    int ppid = 0;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "re");
    if (!f)
        return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    close_paren = strrchr(buf, ')');
    if (!close_paren || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
        return 0;
    return (pid_t)ppid;
}

/* The first message on the connection must be the status; returns it. */
static json_t *status_from_connection(void)
{
    json_t *st = recv_msg(20000, NULL);

    ck_assert_msg(st != NULL, "no status line on the connection");
    ck_assert_msg(json_object_get(st, "ok") && !json_object_get(st, "seq") &&
                      !json_object_get(st, "ev"),
                  "the first line is not the status: %s", json_dumps(st, JSON_COMPACT));
    return st;
}

/* Requests sent before the status wait in the socket and are answered once
 * the sandbox exists; the first process does not wait for that. */
START_TEST(client_fd_pipelined)
{
    int sv[2], status;
    json_int_t seq;
    json_t *st;
    pid_t pid;

    spec_write(spec_new(NULL));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        child_fd3(sv[1]);
        execl(monitor_path, monitor_path, "--id", T.id, "--spec", spec_path, "--run-dir", T.run,
              "--state-dir", T.state, "--log", log_path, "--client-fd", "3", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    T.fd = sv[0];
    seq = request_send(exec_req("early", "echo early; exit 4"));
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "first process: %d", status);
    st = status_from_connection();
    ck_assert(json_is_true(json_object_get(st, "ok")));
    T.pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
    ck_assert_int_gt(T.pid, 0);
    ck_assert_int_ne(T.pid, pid);
    json_decref(st);
    st = reply_of(seq);
    ck_assert(json_is_true(json_object_get(st, "ok")));
    json_decref(st);
    ck_assert_int_eq(exec_wait("early", 10000), 4);
    assert_stream("early", "stdout", "early\n");
    /* Reachable through its socket too (a restarted daemon). */
    monitor_connect();
    request_ok(json_pack("{s:s}", "op", "terminate"));
    assert_clean_exit();
}
END_TEST

/* A sandbox that cannot be made: the error is the status on the connection,
 * then the connection closes, and exit.json says so. */
START_TEST(client_fd_failed_create)
{
    const char *missing[] = {"/no/such/program", NULL};
    int sv[2], status;
    json_int_t seq;
    json_t *st;
    bool eof;
    pid_t pid;

    spec_write(spec_new(missing));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        child_fd3(sv[1]);
        execl(monitor_path, monitor_path, "--id", T.id, "--spec", spec_path, "--run-dir", T.run,
              "--state-dir", T.state, "--client-fd", "3", (char *)NULL);
        _exit(127);
    }
    close(sv[1]);
    T.fd = sv[0];
    seq = request_send(exec_req("never", "true"));
    (void)seq;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    st = status_from_connection();
    ck_assert(json_is_false(json_object_get(st, "ok")));
    json_decref(st);
    ck_assert_ptr_null(recv_msg(20000, &eof));
    ck_assert(eof);
    st = read_json(rpath("exit.json"));
    ck_assert_ptr_nonnull(st);
    ck_assert_str_eq(json_string_value(json_object_get(st, "finish_reason")), "error");
    json_decref(st);
}
END_TEST

/* Sends a zygote request (a datagram) with fd attached, or none when -1. */
static void zygote_send(int ctl, json_t *req, int fd)
{
    char *text = json_dumps(req, JSON_COMPACT);
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(int))];
    } c = {0};
    struct iovec iov = {.iov_base = text, .iov_len = strlen(text)};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

    if (fd >= 0) {
        struct cmsghdr *cm;
        mh.msg_control = &c;
        mh.msg_controllen = sizeof(c);
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
    }
    ck_assert_int_eq(sendmsg(ctl, &mh, MSG_NOSIGNAL), (ssize_t)strlen(text));
    free(text);
    json_decref(req);
}

/* The zygote forks one monitor per request, refuses what is malformed and
 * serves on; it ends when the daemon's end closes, and its monitors live
 * on, found by their command line like any. */
START_TEST(zygote_forks_monitors)
{
    int ctl[2], sv[2], status;
    char path[64], cmd[4096];
    json_int_t seq;
    json_t *st;
    pid_t z;
    size_t n;
    FILE *f;

    spec_write(spec_new(NULL));
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ctl), 0);
    z = fork();
    ck_assert_int_ge(z, 0);
    if (z == 0) {
        child_fd3(ctl[1]);
        execl(monitor_path, monitor_path, "--zygote", "3", (char *)NULL);
        _exit(127);
    }
    close(ctl[1]);

    /* Refused: no connection passed; a member missing. */
    zygote_send(ctl[0],
                json_pack("{s:s,s:s,s:s,s:s}", "id", T.id, "spec", spec_path, "run_dir", T.run,
                          "state_dir", T.state),
                -1);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    zygote_send(ctl[0], json_pack("{s:s,s:s}", "id", T.id, "spec", spec_path), sv[1]);
    close(sv[1]);
    T.fd = sv[0];
    ck_assert_ptr_null(recv_msg(10000, NULL)); /* closed unanswered */
    close(T.fd);
    /* An id the monitor refuses: its status says why. */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    zygote_send(ctl[0],
                json_pack("{s:s,s:s,s:s,s:s}", "id", "../x", "spec", spec_path, "run_dir", T.run,
                          "state_dir", T.state),
                sv[1]);
    close(sv[1]);
    T.fd = sv[0];
    st = status_from_connection();
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(st, "error"), "code")),
                     "invalid_argument");
    json_decref(st);
    close(T.fd);
    T.in_len = 0;

    /* A monitor. */
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    zygote_send(ctl[0],
                json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", T.id, "spec", spec_path, "run_dir", T.run,
                          "state_dir", T.state, "log", log_path),
                sv[1]);
    close(sv[1]);
    T.fd = sv[0];
    seq = request_send(exec_req("z1", "echo z1"));
    st = status_from_connection();
    ck_assert(json_is_true(json_object_get(st, "ok")));
    T.pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
    json_decref(st);
    st = reply_of(seq);
    ck_assert(json_is_true(json_object_get(st, "ok")));
    json_decref(st);
    ck_assert_int_eq(exec_wait("z1", 10000), 0);
    assert_stream("z1", "stdout", "z1\n");
    ck_assert_int_eq(parent_of(T.pid), z);
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)T.pid);
    f = fopen(path, "re");
    ck_assert_ptr_nonnull(f);
    n = fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    for (size_t i = 0; i < n; i++)
        if (cmd[i] == '\0')
            cmd[i] = ' ';
    cmd[n] = '\0';
    {
        char want[128];
        snprintf(want, sizeof(want), "sandboxd-monitor --id %s ", T.id);
        ck_assert_msg(strstr(cmd, want), "the monitor's command line: %s", cmd);
    }

    /* The daemon goes: so does the zygote (and its spare), not its
     * monitor. */
    close(ctl[0]);
    ck_assert_int_eq(waitpid(z, &status, 0), z);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "zygote status %d", status);
    for (int64_t until = now_ms() + 2000; now_ms() < until;) {
        /* The spare, re-parented to us (the subreaper): reap it. */
        siginfo_t si = {0};
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid > 0 &&
            si.si_pid != T.pid) {
            waitpid(si.si_pid, NULL, 0);
            break;
        }
        sleep_ms(10);
    }
    ck_assert_int_eq(kill(T.pid, 0), 0);
    request_ok(exec_req("z2", "echo z2"));
    ck_assert_int_eq(exec_wait("z2", 10000), 0);
    request_ok(json_pack("{s:s}", "op", "terminate"));
    assert_clean_exit();
}
END_TEST

START_TEST(client_disconnects)
{
    char *out, want[65536];
    size_t wl = 0;
    json_t *ex;

    monitor_start_ok(spec_new(NULL));
    monitor_connect();
    close(T.fd);
    T.fd = -1;
    monitor_connect();
    /* Output produced while no client is connected lands on disk all the
     * same: the client goes away right after starting the process. */
    request_ok(exec_req("bg", "sleep 0.3; seq 1 5000"));
    close(T.fd);
    T.fd = -1;
    for (int64_t until = now_ms() + 10000; !(ex = proc_line("bg", "returncode"));) {
        ck_assert_msg(now_ms() < until, "no exit line without a client");
        sleep_ms(20);
    }
    ck_assert_int_eq(json_integer_value(json_object_get(ex, "returncode")), 0);
    json_decref(ex);
    for (int i = 1; i <= 5000; i++)
        wl += (size_t)sprintf(want + wl, "%d\n", i);
    out = read_stream("bg", "stdout", NULL, NULL, NULL);
    ck_assert_str_eq(out, want);
    free(out);
    ck_assert(ended_on_disk("bg", "stdout"));
    /* A new client learns what happened and goes on. */
    monitor_connect();
    {
        json_t *r = request(json_pack("{s:s}", "op", "status")), *p;
        p = json_array_get(json_object_get(r, "processes"), 0);
        ck_assert_str_eq(json_string_value(json_object_get(p, "id")), "bg");
        ck_assert_int_eq(json_integer_value(json_object_get(p, "returncode")), 0);
        json_decref(r);
    }
    request_ok(exec_req("again", "echo hi"));
    ck_assert_int_eq(exec_wait("again", 10000), 0);
    assert_stream("again", "stdout", "hi\n");
    request_ok(json_pack("{s:s}", "op", "terminate"));
    assert_clean_exit();
}
END_TEST

START_TEST(output_latency)
{
    double worst = 0;
    size_t seen = 0;
    json_t *ev;

    monitor_start_ok(spec_new(NULL));
    monitor_connect();
    /* Each line carries the time it was written: the uptime (busybox's
     * date has no %N), 10 ms granular, the same clock as CLOCK_BOOTTIME. */
    request_ok(exec_req("tick", "for i in 1 2 3; do read u rest < /proc/uptime; echo $u; sleep 1; "
                                "done"));
    for (int64_t until = now_ms() + 10000; seen < 3 && now_ms() < until;) {
        size_t len;
        char *out = read_stream("tick", "stdout", &len, NULL, NULL), *line = out;
        struct timespec ts;
        double now;
        size_t lines = 0;

        clock_gettime(CLOCK_BOOTTIME, &ts);
        now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
        for (char *nl; (nl = strchr(line, '\n')); line = nl + 1, lines++) {
            if (lines < seen)
                continue;
            double lag = now - strtod(line, NULL);
            if (lag > worst)
                worst = lag;
            seen = lines + 1;
        }
        free(out);
        sleep_ms(2);
    }
    ck_assert_uint_eq(seen, 3);
    ck_assert_msg(worst < 0.1, "a line reached the file %.3f s after it was written", worst);
    /* And the daemon is told at once. */
    ev = wait_event("output", "tick", 1000);
    ck_assert_int_gt(json_integer_value(json_object_get(ev, "size")), 0);
    json_decref(ev);
    ck_assert_int_eq(exec_wait("tick", 10000), 0);
    request_ok(json_pack("{s:s}", "op", "terminate"));
    assert_clean_exit();
}
END_TEST

START_TEST(hostile_client)
{
    json_t *r;
    bool eof;
    char *big;

    monitor_start_ok(spec_new(NULL));
    monitor_connect();
    send_raw("this is not json\n", 17);
    r = recv_msg(5000, NULL);
    ck_assert(json_is_null(json_object_get(r, "seq")));
    assert_error(r, "invalid_argument");
    send_raw("[1,2]\n{\"op\":\"status\"}\n", 22);
    assert_error(recv_msg(5000, NULL), "invalid_argument");
    assert_error(recv_msg(5000, NULL), "invalid_argument");
    assert_error(request(json_pack("{s:s}", "op", "bogus")), "invalid_argument");
    assert_error(request(json_pack("{s:i}", "op", 3)), "invalid_argument");
    assert_error(request(json_pack("{s:s,s:s,s:s}", "op", "signal", "id", "x", "signal", "9")),
                 "not_found");
    assert_error(request(json_pack("{s:s,s:s,s:s}", "op", "stdin", "id", "entrypoint", "data", "")),
                 "not_found");
    request_ok(json_pack("{s:s}", "op", "activity"));
    /* A line over 1 MiB: the monitor hangs up, and serves the next client. */
    big = malloc(SBXD_MONITOR_MAX_MESSAGE + 4096);
    memset(big, 'x', SBXD_MONITOR_MAX_MESSAGE + 4096);
    send(T.fd, big, SBXD_MONITOR_MAX_MESSAGE + 4096, MSG_NOSIGNAL);
    free(big);
    r = recv_msg(5000, &eof);
    ck_assert_ptr_null(r);
    ck_assert(eof);
    monitor_connect();
    request_ok(json_pack("{s:s}", "op", "status"));
    /* A second connection replaces the first. */
    {
        int old = T.fd;
        T.fd = -1;
        monitor_connect();
        request_ok(json_pack("{s:s}", "op", "status"));
        close(old);
    }
    request_ok(json_pack("{s:s}", "op", "shutdown"));
    assert_clean_exit();
}
END_TEST

/* After the suite: ends the monitors and sandboxes of failed tests. */
static void sweep(void)
{
    DIR *roots = opendir(state_root);
    struct dirent *de;

    while (roots && (de = readdir(roots))) {
        char path[PATH_MAX], run[PATH_MAX], state[PATH_MAX];
        DIR *recs;
        struct dirent *r;

        if (de->d_name[0] == '.')
            continue;
        snprintf(run, sizeof(run), "%s/%s", run_root, de->d_name);
        snprintf(state, sizeof(state), "%s/%s", state_root, de->d_name);
        snprintf(path, sizeof(path), "%s/records", state);
        recs = opendir(path);
        while (recs && (r = readdir(recs))) {
            char mpath[PATH_MAX * 2], cmd[256] = "";
            json_t *mon;
            sbx_error err = {0};
            FILE *f;

            if (r->d_name[0] == '.')
                continue;
            snprintf(mpath, sizeof(mpath), "%s/%s/monitor.json", path, r->d_name);
            mon = read_json(mpath);
            if (mon) {
                int pid = (int)json_integer_value(json_object_get(mon, "pid"));
                snprintf(mpath, sizeof(mpath), "/proc/%d/cmdline", pid);
                if (pid > 0 && (f = fopen(mpath, "re"))) {
                    if (fgets(cmd, sizeof(cmd), f) && strstr(cmd, "sandboxd-monitor"))
                        kill(pid, SIGKILL);
                    fclose(f);
                }
                json_decref(mon);
            }
            fprintf(stderr, "sweep: sandbox %s of a failed test\n", r->d_name);
            sleep_ms(100);
            (void)sbx_sandbox_cleanup(run, state, cgroup_parent, r->d_name, &err);
        }
        if (recs)
            closedir(recs);
    }
    if (roots)
        closedir(roots);
    rm_rf(run_root);
    rm_rf(state_root);
}

static Suite *monitor_suite(void)
{
    Suite *s = suite_create("monitor");
    TCase *tc = tcase_create("monitor");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, entrypoint_files_and_exit);
    tcase_add_test(tc, bad_spec_and_failed_create);
    tcase_add_test(tc, exec_output_and_returncode);
    tcase_add_test(tc, exec_records_made_ahead);
    tcase_add_test(tc, exec_stdin_round_trip);
    tcase_add_test(tc, binary_output_intact);
    tcase_add_test(tc, output_rotation);
    tcase_add_test(tc, exec_timeout);
    tcase_add_test(tc, sandbox_timeout);
    tcase_add_test(tc, idle_timeout);
    tcase_add_test(tc, terminate_op);
    tcase_add_test(tc, out_of_memory);
    tcase_add_test(tc, exec_into_finished_sandbox);
    tcase_add_test(tc, client_disconnects);
    tcase_add_test(tc, output_latency);
    tcase_add_test(tc, hostile_client);
    tcase_add_test(tc, client_fd_pipelined);
    tcase_add_test(tc, client_fd_failed_create);
    tcase_add_test(tc, zygote_forks_monitors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *store = getenv("SBX_STATE_DIR");
    sbx_error err = {0};
    SRunner *sr;
    int failed;

    if (geteuid() != 0) {
        printf("SKIP: the monitor creates namespaces, cgroups and mounts: run as root\n");
        return 77;
    }
    if (!store || !*store)
        store = "/var/lib/sandboxd";
    if (sbx_image_load(store, "busybox", &busybox, &err) < 0) {
        printf("SKIP: %s (run runtime/images/sbx-mkimage busybox)\n", err.message);
        return 77;
    }
    monitor_path = getenv("SBX_MONITOR");
    if (!monitor_path || access(monitor_path, X_OK) < 0) {
        printf("SKIP: SBX_MONITOR does not name the sandboxd-monitor binary\n");
        sbx_image_free(busybox);
        return 77;
    }
    snprintf(cgroup_parent, sizeof(cgroup_parent), "sandboxd-mtest-%d", (int)getpid());
    snprintf(run_root, sizeof(run_root), "/run/sbx-mtest.%d", (int)getpid());
    snprintf(state_root, sizeof(state_root), "/var/tmp/sbx-mtest.%d", (int)getpid());
    if (mkdir(run_root, 0711) < 0 || mkdir(state_root, 0711) < 0) {
        printf("cannot make %s and %s: %s\n", run_root, state_root, strerror(errno));
        return 1;
    }
    /* The sandboxes' roots (unprivileged host uids) must traverse these. */
    chmod(run_root, 0711);
    chmod(state_root, 0711);
    sr = srunner_create(monitor_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sweep();
    if (sbx_cgroup_prune(cgroup_parent, &err) < 0 && err.code != ENOENT)
        fprintf(stderr, "prune %s: %s\n", cgroup_parent, err.message);
    sbx_image_free(busybox);
    return failed ? 1 : 0;
}
