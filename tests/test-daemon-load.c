/* test-daemon-load.c — the real sandboxd under load and at its edges: 50
 * concurrent clients (and nothing left behind by them), exec and sandbox
 * timeouts, idle timeouts, stdin, terminals, signals, events, stats, the
 * output bound, counts and limits, all as ../shared/API.md says. */
#include <check.h>
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[64], sock[128], state[128], run[128], cgparent[64], config[128];
static pid_t daemon_pid;

static const char *env_or(const char *k, const char *dflt)
{
    const char *v = getenv(k);
    return v && *v ? v : dflt;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct buf {
    char *data;
    size_t len;
    char dropped[32]; /* the X-Sandboxd-Dropped header, "" when absent */
};

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct buf *b = ud;
    char *nd = realloc(b->data, b->len + sz * n + 1);

    if (!nd)
        return 0;
    b->data = nd;
    memcpy(b->data + b->len, p, sz * n);
    b->len += sz * n;
    b->data[b->len] = '\0';
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud)
{
    struct buf *b = ud;
    static const char name[] = "X-Sandboxd-Dropped:";
    size_t len = sz * n;

    if (len > sizeof(name) - 1 && !strncasecmp(p, name, sizeof(name) - 1)) {
        size_t i = sizeof(name) - 1, o = 0;
        while (i < len && p[i] == ' ')
            i++;
        while (i < len && o + 1 < sizeof(b->dropped) && isdigit((unsigned char)p[i]))
            b->dropped[o++] = p[i++];
        b->dropped[o] = '\0';
    }
    return len;
}

/* One request, safe to call from any thread; returns the status (0 when the
 * transfer failed or timed out), the body in *ret (caller frees). */
static long http_t(const char *method, const char *path, const void *body, size_t body_len,
                   long timeout_s, struct buf *ret)
{
    CURL *c = curl_easy_init();
    char url[1024];
    long status = 0;
    struct buf b = {0};

    snprintf(url, sizeof(url), "http://localhost%s", path);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (!b.data)
        b.data = strdup("");
    if (ret)
        *ret = b;
    else
        free(b.data);
    return status;
}

static long http(const char *method, const char *path, const void *body, size_t body_len,
                 struct buf *ret)
{
    return http_t(method, path, body, body_len, 60, ret);
}

static json_t *call(const char *method, const char *path, const char *body, long want)
{
    struct buf b;
    long st = http(method, path, body, body ? strlen(body) : 0, &b);
    json_error_t e;
    json_t *j;

    ck_assert_msg(st == want, "%s %s → %ld, want %ld: %s", method, path, st, want, b.data);
    j = json_loads(b.data, JSON_DECODE_ANY, &e);
    free(b.data);
    return j;
}

/* A path under /v1/sandboxes/ID. */
static const char *sbpath(char *out, size_t n, const char *id, const char *fmt, ...)
{
    va_list ap;
    int k = snprintf(out, n, "/v1/sandboxes/%s", id);

    va_start(ap, fmt);
    vsnprintf(out + k, n - (size_t)k, fmt, ap);
    va_end(ap);
    return out;
}

static const char *str(json_t *o, const char *k);

/* Starts sandboxd on the current dir (and config, if any); false when it did
 * not come up.  No assertions: the sweep in main() uses it too. */
static bool spawn_daemon(void)
{
    daemon_pid = fork();
    if (daemon_pid < 0)
        return false;
    if (daemon_pid == 0) {
        const char *image_store = env_or("SBX_STATE_DIR", "/var/lib/sandboxd");
        const char *monitor = env_or("SBX_MONITOR", "./sandboxd-monitor");
        const char *daemon = env_or("SBX_DAEMON", "./sandboxd");
        if (config[0])
            execl(daemon, "sandboxd", "--socket", sock, "--state-dir", state, "--run-dir", run,
                  "--image-store", image_store, "--monitor", monitor, "--cgroup-parent", cgparent,
                  "--config", config, (char *)NULL);
        else
            execl(daemon, "sandboxd", "--socket", sock, "--state-dir", state, "--run-dir", run,
                  "--image-store", image_store, "--monitor", monitor, "--cgroup-parent", cgparent,
                  (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (http("GET", "/v1/health", NULL, 0, NULL) == 200)
            return true;
        usleep(10000);
    }
    return false;
}

static void start_daemon(void)
{
    ck_assert_msg(spawn_daemon(), "the daemon did not come up");
}

static void stop_daemon(int sig)
{
    if (daemon_pid > 0) {
        kill(daemon_pid, sig);
        waitpid(daemon_pid, NULL, 0);
        daemon_pid = 0;
    }
}

/* Deletes every sandbox the daemon knows (so monitors clean up) and stops
 * it.  No assertions. */
static void delete_all_quietly(void)
{
    char path[256];
    struct buf b;
    json_t *list, *sb;
    size_t i;

    http_t("GET", "/v1/sandboxes?state=all", NULL, 0, 10, &b);
    list = json_loads(b.data, 0, NULL);
    free(b.data);
    json_array_foreach(json_object_get(list, "sandboxes"), i, sb)
    {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s", str(sb, "sandbox_id"));
        http_t("DELETE", path, NULL, 0, 10, NULL);
    }
    json_decref(list);
    usleep(200000);
    stop_daemon(SIGTERM);
}

/* Each test works in its own directory under this one, made by main(). */
static char session[64];

/* Check ends a failed test's process with _exit() and kills its process
 * group (the daemon) without running the teardown; the monitors, in their
 * own sessions, live on.  So main() comes here after the run: a daemon
 * started on each directory a test left behind finds its sandboxes again,
 * deletes them and prunes the cgroup parent.  No assertions. */
static void sweep_session(void)
{
    DIR *d = opendir(session);
    struct dirent *e;
    char cmd[256];

    while (d && (e = readdir(d))) {
        char path[300];
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(dir, sizeof(dir), "%s/%s", session, e->d_name);
        snprintf(sock, sizeof(sock), "%s/sandboxd.sock", dir);
        snprintf(state, sizeof(state), "%s/state", dir);
        snprintf(run, sizeof(run), "%s/run", dir);
        snprintf(config, sizeof(config), "%s/sandboxd.json", dir);
        if (access(config, F_OK) < 0)
            config[0] = '\0';
        snprintf(path, sizeof(path), "%s/cgroup-parent", dir);
        f = fopen(path, "re");
        if (!f || !fgets(cgparent, sizeof(cgparent), f)) {
            if (f)
                fclose(f);
            continue;
        }
        fclose(f);
        fprintf(stderr, "cleaning up after a failed test in %s\n", dir);
        if (spawn_daemon())
            delete_all_quietly();
        else
            stop_daemon(SIGKILL);
    }
    if (d)
        closedir(d);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", session);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", session);
}

static void setup(void)
{
    FILE *f;
    char path[128];

    snprintf(dir, sizeof(dir), "%s/t.XXXXXX", session);
    ck_assert_ptr_nonnull(mkdtemp(dir));
    chmod(dir, 0711);
    snprintf(sock, sizeof(sock), "%s/sandboxd.sock", dir);
    snprintf(state, sizeof(state), "%s/state", dir);
    snprintf(run, sizeof(run), "%s/run", dir);
    snprintf(cgparent, sizeof(cgparent), "sandboxd-ltest-%d", (int)getpid());
    config[0] = '\0';
    /* For sweep_session(), should this test fail. */
    snprintf(path, sizeof(path), "%s/cgroup-parent", dir);
    f = fopen(path, "we");
    ck_assert_ptr_nonnull(f);
    fputs(cgparent, f);
    fclose(f);
    start_daemon();
}

/* Deletes every sandbox (so monitors clean up) and stops the daemon. */
static void delete_all_and_stop(void)
{
    json_t *list, *sb;
    size_t i;
    char path[256];

    if (daemon_pid <= 0)
        return;
    list = call("GET", "/v1/sandboxes?state=all", NULL, 200);
    json_array_foreach(json_object_get(list, "sandboxes"), i, sb)
    {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s",
                 json_string_value(json_object_get(sb, "sandbox_id")));
        http("DELETE", path, NULL, 0, NULL);
    }
    json_decref(list);
    usleep(200000);
    stop_daemon(SIGTERM);
}

static void teardown(void)
{
    char cmd[256];

    delete_all_and_stop();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    /* Every sandbox was deleted and the daemon stopped with none running: it
     * pruned its cgroup parent. */
    snprintf(cmd, sizeof(cmd), "test -z \"$(find /sys/fs/cgroup -maxdepth 6 -name '%s*')\"",
             cgparent);
    ck_assert_msg(system(cmd) == 0, "cgroup parent %s left behind", cgparent);
}

static char *create(const char *body)
{
    json_t *r = call("POST", "/v1/sandboxes", body, 201);
    char *id = strdup(json_string_value(json_object_get(r, "sandbox_id")));
    json_decref(r);
    return id;
}

static json_t *wait_finished(const char *id)
{
    char path[128];
    return call("GET", sbpath(path, sizeof(path), id, "/wait?timeout_s=30"), NULL, 200);
}

/* Starts argv (a JSON array) plus extra JSON fields; returns the process id. */
static char *exec_start(const char *id, const char *argv_json, const char *extra)
{
    char path[256], body[2048];
    json_t *r;
    char *pid;

    snprintf(body, sizeof(body), "{\"argv\":%s%s%s}", argv_json, extra ? "," : "",
             extra ? extra : "");
    r = call("POST", sbpath(path, sizeof(path), id, "/exec"), body, 201);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(r, "process_id")));
    pid = strdup(json_string_value(json_object_get(r, "process_id")));
    json_decref(r);
    return pid;
}

/* The whole stdout of a process, following it to its end. */
static struct buf proc_stdout(const char *id, const char *pid)
{
    char path[256];
    struct buf b;

    ck_assert_int_eq(http("GET", sbpath(path, sizeof(path), id, "/processes/%s/stdout?follow=1", pid),
                          NULL, 0, &b),
                     200);
    return b;
}

static json_int_t proc_wait(const char *id, const char *pid)
{
    char path[256];
    json_t *r = call("GET", sbpath(path, sizeof(path), id, "/processes/%s/wait?timeout_s=30", pid),
                     NULL, 200);
    json_t *rc = json_object_get(r, "returncode");
    json_int_t v;

    ck_assert_msg(json_is_integer(rc), "process %s has no returncode after 30 s", pid);
    v = json_integer_value(rc);
    json_decref(r);
    return v;
}

static const char *str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "(none)";
}

static int count_fds(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *e;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    if (!d)
        return -1;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n - (pid == getpid()); /* not the DIR's own fd */
}

/* ---- 1. 50 concurrent clients, and nothing left behind ---- */

#define N_CLIENTS 50

struct client {
    int index;
    char error[512]; /* "" when every step went as it should */
};

#define CLIENT_FAIL(...)                                                                           \
    do {                                                                                           \
        snprintf(cl->error, sizeof(cl->error), __VA_ARGS__);                                       \
        goto out;                                                                                  \
    } while (0)

/* One orchestrator's whole conversation; never asserts (not the main thread). */
static void *client_main(void *arg)
{
    struct client *cl = arg;
    char path[256], body[256], want[64], id[64] = "", pid[64] = "";
    struct buf b = {0};
    json_t *j = NULL;
    long st;

    st = http("POST", "/v1/sandboxes", "{\"image\":\"busybox\"}", 19, &b);
    j = json_loads(b.data, 0, NULL);
    if (st != 201 || !json_string_value(json_object_get(j, "sandbox_id")))
        CLIENT_FAIL("create → %ld: %s", st, b.data);
    snprintf(id, sizeof(id), "%s", str(j, "sandbox_id"));
    json_decref(j), j = NULL, free(b.data), b.data = NULL;

    snprintf(body, sizeof(body), "{\"argv\":[\"sh\",\"-c\",\"echo $0\",\"client-%d\"]}", cl->index);
    st = http("POST", sbpath(path, sizeof(path), id, "/exec"), body, strlen(body), &b);
    j = json_loads(b.data, 0, NULL);
    if (st != 201 || !json_string_value(json_object_get(j, "process_id")))
        CLIENT_FAIL("%s: exec → %ld: %s", id, st, b.data);
    snprintf(pid, sizeof(pid), "%s", str(j, "process_id"));
    json_decref(j), j = NULL, free(b.data), b.data = NULL;

    st = http("GET", sbpath(path, sizeof(path), id, "/processes/%s/stdout?follow=1", pid), NULL, 0,
              &b);
    snprintf(want, sizeof(want), "client-%d\n", cl->index);
    if (st != 200 || strcmp(b.data, want))
        CLIENT_FAIL("%s/%s: stdout → %ld: \"%s\", want \"client-%d\\n\"", id, pid, st, b.data,
                    cl->index);
    free(b.data), b.data = NULL;

    st = http("GET", sbpath(path, sizeof(path), id, "/processes/%s/wait?timeout_s=30", pid), NULL,
              0, &b);
    j = json_loads(b.data, 0, NULL);
    if (st != 200 || !json_is_integer(json_object_get(j, "returncode")) ||
        json_integer_value(json_object_get(j, "returncode")) != 0)
        CLIENT_FAIL("%s/%s: wait → %ld: %s", id, pid, st, b.data);
    json_decref(j), j = NULL, free(b.data), b.data = NULL;

    st = http("POST", sbpath(path, sizeof(path), id, "/terminate"), "{\"wait\":true}", 13, &b);
    j = json_loads(b.data, 0, NULL);
    if (st != 200 || json_integer_value(json_object_get(j, "returncode")) != 137 ||
        strcmp(str(j, "state"), "finished"))
        CLIENT_FAIL("%s: terminate → %ld: %s", id, st, b.data);
    json_decref(j), j = NULL, free(b.data), b.data = NULL;

    st = http("DELETE", sbpath(path, sizeof(path), id, ""), NULL, 0, &b);
    if (st != 204)
        CLIENT_FAIL("%s: delete → %ld: %s", id, st, b.data);
out:
    json_decref(j);
    free(b.data);
    return NULL;
}

/* Counts the processes whose command line contains `needle`; lists them in found. */
static int scan_procs(const char *needle, char *found, size_t found_len)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    int n = 0;

    found[0] = '\0';
    while (d && (e = readdir(d))) {
        char path[300], cmd[4096];
        ssize_t len;
        int fd;

        if (!isdigit((unsigned char)e->d_name[0]) || atoi(e->d_name) == getpid())
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        len = read(fd, cmd, sizeof(cmd) - 1);
        close(fd);
        if (len <= 0)
            continue;
        for (ssize_t i = 0; i < len; i++)
            if (cmd[i] == '\0')
                cmd[i] = ' ';
        cmd[len] = '\0';
        if (strstr(cmd, needle)) {
            size_t used = strlen(found);
            snprintf(found + used, found_len - used, "[%s] %.200s; ", e->d_name, cmd);
            n++;
        }
    }
    if (d)
        closedir(d);
    return n;
}

/* Counts our mounts whose line in mountinfo contains `needle`; lists them in found. */
static int scan_mounts(const char *needle, char *found, size_t found_len)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096];
    int n = 0;

    found[0] = '\0';
    while (f && fgets(line, sizeof(line), f)) {
        if (strstr(line, needle)) {
            size_t used = strlen(found);
            snprintf(found + used, found_len - used, "%.300s", line);
            n++;
        }
    }
    if (f)
        fclose(f);
    return n;
}

START_TEST(test_concurrent_clients)
{
    static struct client clients[N_CLIENTS];
    pthread_t threads[N_CLIENTS];
    int daemon_fds_before, daemon_fds_after = -1, own_fds_before, own_fds_after, failed = 0;
    char found[4096], cmd[256];
    double t0;

    /* One whole conversation first: libuv opens a reserve fd (/dev/null, for
     * its EMFILE trick) at the first uv_pipe_init and keeps it; that is not
     * a leak. */
    clients[0].index = -1;
    client_main(&clients[0]);
    ck_assert_msg(!clients[0].error[0], "warm-up: %s", clients[0].error);
    own_fds_before = count_fds(getpid());
    daemon_fds_before = count_fds(daemon_pid);
    ck_assert_int_gt(daemon_fds_before, 0);

    t0 = now_ms();
    for (int i = 0; i < N_CLIENTS; i++) {
        clients[i].index = i;
        clients[i].error[0] = '\0';
        ck_assert_int_eq(pthread_create(&threads[i], NULL, client_main, &clients[i]), 0);
    }
    for (int i = 0; i < N_CLIENTS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < N_CLIENTS; i++) {
        if (clients[i].error[0]) {
            fprintf(stderr, "client %d: %s\n", i, clients[i].error);
            failed++;
        }
    }
    fprintf(stderr, "%d clients in %.0f ms, %d failed\n", N_CLIENTS, now_ms() - t0, failed);
    ck_assert_msg(failed == 0, "%d of %d clients failed; first: %s", failed, N_CLIENTS,
                  clients[0].error[0] ? clients[0].error : "(see stderr)");

    /* Idle again: every connection closed, every monitor gone. The daemon
     * may take a moment to notice closed connections and reaped monitors. */
    for (int i = 0; i < 100; i++) {
        daemon_fds_after = count_fds(daemon_pid);
        if (daemon_fds_after <= daemon_fds_before)
            break;
        usleep(50000);
    }
    fprintf(stderr, "daemon fds: %d idle before, %d idle after\n", daemon_fds_before,
            daemon_fds_after);
    ck_assert_msg(daemon_fds_after <= daemon_fds_before,
                  "the daemon holds %d fds after the load, %d before", daemon_fds_after,
                  daemon_fds_before);
    {
        json_t *info = call("GET", "/v1/info", NULL, 200);
        ck_assert_int_eq(
            json_integer_value(json_object_get(json_object_get(info, "counts"), "sandboxes_running")),
            0);
        json_decref(info);
    }

    delete_all_and_stop();
    usleep(200000);
    ck_assert_msg(scan_procs(dir, found, sizeof(found)) == 0, "left running: %s", found);
    ck_assert_msg(scan_procs("sandboxd-monitor", found, sizeof(found)) == 0 ||
                      !strstr(found, run),
                  "monitors left running: %s", found);
    ck_assert_msg(scan_mounts(dir, found, sizeof(found)) == 0, "mounts left: %s", found);
    snprintf(cmd, sizeof(cmd), "test -z \"$(find /sys/fs/cgroup -maxdepth 6 -name '%s*')\"",
             cgparent);
    ck_assert_msg(system(cmd) == 0, "cgroup %s left behind", cgparent);
    own_fds_after = count_fds(getpid());
    ck_assert_msg(own_fds_after == own_fds_before, "the test holds %d fds, %d before",
                  own_fds_after, own_fds_before);
}
END_TEST

/* ---- 2. an exec's timeout ends the exec, not the sandbox ---- */

START_TEST(test_exec_timeout)
{
    char *id = create("{\"image\":\"busybox\"}"), *pid, *pid2;
    char path[256];
    struct buf b;
    json_t *r;
    double t0 = now_ms(), took;

    pid = exec_start(id, "[\"sleep\",\"100\"]", "\"timeout_s\":1");
    ck_assert_int_eq(proc_wait(id, pid), 137);
    took = now_ms() - t0;
    ck_assert_msg(took < 3000, "the 1 s exec timeout took %.0f ms", took);
    r = call("GET", sbpath(path, sizeof(path), id, ""), NULL, 200);
    ck_assert_str_ne(str(r, "state"), "finished");
    json_decref(r);
    pid2 = exec_start(id, "[\"echo\",\"still here\"]", NULL);
    b = proc_stdout(id, pid2);
    ck_assert_str_eq(b.data, "still here\n");
    ck_assert_int_eq(proc_wait(id, pid2), 0);
    free(b.data);
    free(pid);
    free(pid2);
    free(id);
}
END_TEST

/* ---- 3. the sandbox's own timeout ---- */

START_TEST(test_sandbox_timeout)
{
    double t0 = now_ms(), took;
    char *id = create("{\"image\":\"busybox\",\"timeout_s\":2}");
    json_t *r = wait_finished(id);

    took = now_ms() - t0;
    ck_assert_str_eq(str(r, "state"), "finished");
    ck_assert_str_eq(str(r, "finish_reason"), "timeout");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "returncode")), 137);
    ck_assert_msg(took >= 1800 && took < 5000, "timeout_s 2 ended it after %.0f ms", took);
    json_decref(r);
    free(id);
}
END_TEST

/* ---- 4. idle timeout waits for a running exec ---- */

START_TEST(test_idle_timeout)
{
    char *id = create("{\"image\":\"busybox\",\"idle_timeout_s\":2}"), *pid;
    char path[256];
    double t0 = now_ms(), took;
    json_t *r;

    pid = exec_start(id, "[\"sleep\",\"5\"]", NULL);
    /* Two idle timeouts pass while the exec runs: the sandbox lives on. */
    r = call("GET", sbpath(path, sizeof(path), id, "/wait?timeout_s=4"), NULL, 200);
    ck_assert_msg(strcmp(str(r, "state"), "finished"),
                  "ended during a running exec, after %.0f ms: %s", now_ms() - t0,
                  str(r, "finish_reason"));
    json_decref(r);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    r = wait_finished(id);
    took = now_ms() - t0;
    ck_assert_str_eq(str(r, "finish_reason"), "idle_timeout");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "returncode")), 137);
    /* The exec ends at ~5 s, the idle clock starts there: ~7 s. */
    ck_assert_msg(took >= 6000 && took < 11000, "idle timeout hit after %.0f ms", took);
    json_decref(r);
    free(pid);
    free(id);
}
END_TEST

/* ---- 5. stdin in pieces, and binary ---- */

START_TEST(test_exec_stdin)
{
    char *id = create("{\"image\":\"busybox\"}"), *pid;
    char path[256];
    unsigned char bin[1024];
    struct buf b;

    pid = exec_start(id, "[\"cat\"]", NULL);
    sbpath(path, sizeof(path), id, "/processes/%s/stdin", pid);
    ck_assert_int_eq(http("POST", path, "hello ", 6, NULL), 204);
    sbpath(path, sizeof(path), id, "/processes/%s/stdin?eof=1", pid);
    ck_assert_int_eq(http("POST", path, "world", 5, NULL), 204);
    b = proc_stdout(id, pid);
    ck_assert_str_eq(b.data, "hello world");
    free(b.data);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    free(pid);

    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i % 256);
    pid = exec_start(id, "[\"cat\"]", NULL);
    sbpath(path, sizeof(path), id, "/processes/%s/stdin?eof=1", pid);
    ck_assert_int_eq(http("POST", path, bin, sizeof(bin), NULL), 204);
    b = proc_stdout(id, pid);
    ck_assert_int_eq(b.len, sizeof(bin));
    ck_assert_msg(memcmp(b.data, bin, sizeof(bin)) == 0, "binary stdin came back changed");
    free(b.data);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    free(pid);
    free(id);
}
END_TEST

/* ---- 6. the entrypoint's stdin ---- */

START_TEST(test_entrypoint_stdin)
{
    char *id = create("{\"image\":\"busybox\",\"entrypoint\":[\"cat\"]}");
    char path[256];
    struct buf b;
    json_t *r;

    ck_assert_int_eq(http("POST", sbpath(path, sizeof(path), id, "/stdin?eof=1"), "x\n", 2, &b),
                     204);
    free(b.data);
    r = wait_finished(id);
    ck_assert_str_eq(str(r, "state"), "finished");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "returncode")), 0);
    json_decref(r);
    ck_assert_int_eq(http("GET", sbpath(path, sizeof(path), id, "/stdout"), NULL, 0, &b), 200);
    ck_assert_str_eq(b.data, "x\n");
    free(b.data);
    free(id);
}
END_TEST

/* ---- 7. a terminal, and its resize ---- */

START_TEST(test_pty)
{
    char *id = create("{\"image\":\"busybox\"}"), *pid;
    char path[256];
    struct buf b;
    long st;

    pid = exec_start(id, "[\"sh\",\"-c\",\"tty; stty size\"]", "\"pty\":{\"rows\":30,\"cols\":100}");
    b = proc_stdout(id, pid);
    ck_assert_msg(strstr(b.data, "/dev/pts/"), "not a terminal: %s", b.data);
    ck_assert_msg(strstr(b.data, "30 100"), "wrong size: %s", b.data);
    free(b.data);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    free(pid);

    pid = exec_start(id, "[\"sh\",\"-c\",\"read a; stty size\"]", "\"pty\":{\"rows\":24,\"cols\":80}");
    sbpath(path, sizeof(path), id, "/processes/%s/resize", pid);
    st = http("POST", path, "{\"rows\":40,\"cols\":120}", 22, NULL);
    ck_assert_msg(st == 200 || st == 204, "resize → %ld", st);
    sbpath(path, sizeof(path), id, "/processes/%s/stdin", pid);
    ck_assert_int_eq(http("POST", path, "\n", 1, NULL), 204);
    b = proc_stdout(id, pid);
    ck_assert_msg(strstr(b.data, "40 120"), "resize not seen: %s", b.data);
    free(b.data);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    sbpath(path, sizeof(path), id, "/processes/%s/resize", pid);
    json_decref(call("POST", path, "{\"rows\":0,\"cols\":120}", 400));
    free(pid);
    free(id);
}
END_TEST

/* ---- 8. signals ---- */

START_TEST(test_signals)
{
    char *id = create("{\"image\":\"busybox\"}"), *pid;
    char path[256];
    struct buf b;
    long st;

    pid = exec_start(id,
                     "[\"sh\",\"-c\",\"trap 'exit 3' TERM; echo ready; "
                     "while :; do sleep 0.1; done\"]",
                     NULL);
    /* Signal only once the trap is set. */
    for (int i = 0;; i++) {
        ck_assert_int_lt(i, 100);
        ck_assert_int_eq(http("GET", sbpath(path, sizeof(path), id, "/processes/%s/stdout", pid),
                              NULL, 0, &b),
                         200);
        st = strstr(b.data, "ready") != NULL;
        free(b.data);
        if (st)
            break;
        usleep(50000);
    }
    sbpath(path, sizeof(path), id, "/processes/%s/signal", pid);
    st = http("POST", path, "{\"signal\":15}", 13, NULL);
    ck_assert_msg(st == 200 || st == 204, "signal → %ld", st);
    ck_assert_int_eq(proc_wait(id, pid), 3);

    json_decref(call("POST", path, "{\"signal\":0}", 400));
    json_decref(call("POST", path, "{\"signal\":99}", 400));
    json_decref(call("POST", path, "{\"signal\":\"TERM\"}", 400));
    json_decref(call("POST", path, "{}", 400));
    free(pid);
    free(id);
}
END_TEST

/* ---- 9. lifecycle events ---- */

/* Checks that `ndjson` is objects with "event" and "at", and that `want`
 * appear in that order; returns the last event's name. */
static char *check_events(const char *ndjson, const char *const *want, size_t n_want)
{
    const char *p = ndjson;
    size_t next = 0;
    char *last = strdup("");

    ck_assert_msg(*ndjson, "no events");
    ck_assert_msg(ndjson[strlen(ndjson) - 1] == '\n', "events do not end in a newline: %s", ndjson);
    while (*p) {
        const char *nl = strchr(p, '\n');
        json_error_t e;
        json_t *j;

        ck_assert_ptr_nonnull(nl);
        j = json_loadb(p, (size_t)(nl - p), 0, &e);
        ck_assert_msg(json_is_object(j), "not a JSON object: %.*s", (int)(nl - p), p);
        ck_assert_msg(json_is_string(json_object_get(j, "event")), "no event: %.*s", (int)(nl - p), p);
        ck_assert_msg(json_object_get(j, "at") != NULL, "no at: %.*s", (int)(nl - p), p);
        if (next < n_want && !strcmp(str(j, "event"), want[next]))
            next++;
        free(last);
        last = strdup(str(j, "event"));
        json_decref(j);
        p = nl + 1;
    }
    ck_assert_msg(next == n_want, "event `%s` missing or out of order in:\n%s", want[next], ndjson);
    return last;
}

START_TEST(test_events)
{
    static const char *const want[] = {"created", "scheduled", "started", "finished"};
    char *id = create("{\"image\":\"busybox\",\"entrypoint\":[\"true\"]}"), *last;
    char path[256];
    struct buf b;
    double t0;

    json_decref(wait_finished(id));
    ck_assert_int_eq(http("GET", sbpath(path, sizeof(path), id, "/events"), NULL, 0, &b), 200);
    last = check_events(b.data, want, 4);
    free(last);
    free(b.data);
    free(id);

    id = create("{\"image\":\"busybox\",\"entrypoint\":[\"sleep\",\"1\"]}");
    t0 = now_ms();
    ck_assert_int_eq(
        http_t("GET", sbpath(path, sizeof(path), id, "/events?follow=1"), NULL, 0, 10, &b), 200);
    ck_assert_msg(now_ms() - t0 < 5000, "the followed events ended after %.0f ms", now_ms() - t0);
    last = check_events(b.data, want, 4);
    ck_assert_str_eq(last, "finished");
    free(last);
    free(b.data);
    free(id);
}
END_TEST

/* ---- 10. stats ---- */

START_TEST(test_stats)
{
    char *id = create("{\"image\":\"busybox\"}");
    char path[256];
    json_t *r = call("GET", sbpath(path, sizeof(path), id, "/stats"), NULL, 200);
    char *dump = json_dumps(r, 0);

    ck_assert_msg(json_is_integer(json_object_get(r, "cpu_usage_ns")), "stats: %s", dump);
    ck_assert_msg(json_is_integer(json_object_get(r, "memory_current")), "stats: %s", dump);
    ck_assert_msg(json_is_integer(json_object_get(r, "pids_current")), "stats: %s", dump);
    ck_assert_msg(json_integer_value(json_object_get(r, "pids_current")) >= 1, "stats: %s", dump);
    ck_assert_msg(json_integer_value(json_object_get(r, "memory_current")) > 0, "stats: %s", dump);
    free(dump);
    json_decref(r);
    free(id);
}
END_TEST

/* ---- 11. the output bound from the config file ---- */

START_TEST(test_output_bound)
{
    char *id, *pid;
    char path[256];
    struct buf b;
    FILE *f;

    /* Restart the fixture's daemon (it has no sandboxes yet) with a config. */
    stop_daemon(SIGTERM);
    snprintf(config, sizeof(config), "%s/sandboxd.json", dir);
    f = fopen(config, "we");
    ck_assert_ptr_nonnull(f);
    fputs("{\"output_limit_bytes\": 65536}\n", f);
    fclose(f);
    start_daemon();
    {
        json_t *info = call("GET", "/v1/info", NULL, 200);
        ck_assert_int_eq(
            json_integer_value(json_object_get(json_object_get(info, "limits"), "output_limit")),
            65536);
        json_decref(info);
    }

    id = create("{\"image\":\"busybox\"}");
    pid = exec_start(id, "[\"head\",\"-c\",\"1048576\",\"/dev/zero\"]", NULL);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    for (int i = 0; i < 2; i++) {
        sbpath(path, sizeof(path), id, "/processes/%s/stdout%s", pid, i ? "?offset=0" : "");
        ck_assert_int_eq(http("GET", path, NULL, 0, &b), 200);
        ck_assert_msg(b.dropped[0], "%s: no X-Sandboxd-Dropped header", path);
        ck_assert_msg(atoll(b.dropped) > 0, "%s: X-Sandboxd-Dropped: %s", path, b.dropped);
        ck_assert_msg(b.len > 0 && b.len <= 65536, "%s: %zu bytes", path, b.len);
        ck_assert_msg((size_t)atoll(b.dropped) + b.len == 1048576, "%s: dropped %s + kept %zu",
                      path, b.dropped, b.len);
        for (size_t k = 0; k < b.len; k++)
            ck_assert_msg(b.data[k] == 0, "%s: byte %zu is %d", path, k, b.data[k]);
        free(b.data);
    }
    free(pid);
    free(id);
}
END_TEST

/* ---- 12. /v1/info counts and /metrics ---- */

static json_int_t running_count(void)
{
    json_t *info = call("GET", "/v1/info", NULL, 200);
    json_int_t n =
        json_integer_value(json_object_get(json_object_get(info, "counts"), "sandboxes_running"));
    json_decref(info);
    return n;
}

START_TEST(test_info_and_metrics)
{
    json_int_t n0 = running_count();
    char *id = create("{\"image\":\"busybox\"}");
    char path[256];
    struct buf b;
    char *line, *save = NULL;
    int samples = 0;

    ck_assert_int_eq(running_count(), n0 + 1);
    json_decref(call("POST", sbpath(path, sizeof(path), id, "/terminate"), "{\"wait\":true}", 200));
    ck_assert_int_eq(running_count(), n0);

    ck_assert_int_eq(http("GET", "/metrics", NULL, 0, &b), 200);
    ck_assert_msg(b.len > 0 && b.data[b.len - 1] == '\n', "metrics do not end in a newline");
    for (line = strtok_r(b.data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char name[256], value[64], extra;
        char *end;

        if (line[0] == '#')
            continue;
        ck_assert_msg(sscanf(line, "%255s %63s %c", name, value, &extra) == 2,
                      "not \"name value\": %s", line);
        ck_assert_msg(isalpha((unsigned char)name[0]) || name[0] == '_' || name[0] == ':',
                      "bad metric name: %s", line);
        for (char *c = name; *c && *c != '{'; c++)
            ck_assert_msg(isalnum((unsigned char)*c) || *c == '_' || *c == ':', "bad name: %s", line);
        strtod(value, &end);
        ck_assert_msg(*end == '\0', "bad value: %s", line);
        samples++;
    }
    ck_assert_int_gt(samples, 0);
    free(b.data);
    free(id);
}
END_TEST

/* ---- 13. the memory limit ---- */

START_TEST(test_oom)
{
    char *id = create("{\"image\":\"busybox\",\"memory_mib\":32,"
                      "\"entrypoint\":[\"sh\",\"-c\",\"x=a; while :; do x=$x$x; done\"]}");
    json_t *r = wait_finished(id);

    ck_assert_str_eq(str(r, "state"), "finished");
    ck_assert_str_eq(str(r, "finish_reason"), "oom");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "returncode")), 137);
    json_decref(r);
    free(id);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("daemon-load");
    TCase *tc = tcase_create("daemon-load");
    SRunner *sr;
    int failed;

    if (geteuid() != 0) {
        printf("SKIP: the daemon makes namespaces and cgroups: run as root\n");
        return 77;
    }
    if (access("/var/lib/sandboxd/images/busybox/config.json", F_OK) < 0 &&
        !getenv("SBX_STATE_DIR")) {
        printf("SKIP: no busybox image (runtime/images/sbx-mkimage busybox)\n");
        return 77;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    strcpy(session, "/run/sbx-ltest.XXXXXX");
    if (!mkdtemp(session)) {
        perror(session);
        return 99;
    }
    chmod(session, 0711);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_concurrent_clients);
    tcase_add_test(tc, test_exec_timeout);
    tcase_add_test(tc, test_sandbox_timeout);
    tcase_add_test(tc, test_idle_timeout);
    tcase_add_test(tc, test_exec_stdin);
    tcase_add_test(tc, test_entrypoint_stdin);
    tcase_add_test(tc, test_pty);
    tcase_add_test(tc, test_signals);
    tcase_add_test(tc, test_events);
    tcase_add_test(tc, test_stats);
    tcase_add_test(tc, test_output_bound);
    tcase_add_test(tc, test_info_and_metrics);
    tcase_add_test(tc, test_oom);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    sweep_session();
    curl_global_cleanup();
    return failed ? 1 : 0;
}
