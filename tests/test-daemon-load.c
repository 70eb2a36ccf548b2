/* test-daemon-load.c — the real sandboxd under load and at its edges: 50
 * concurrent clients (and nothing left behind by them), exec and sandbox
 * timeouts, idle timeouts, stdin, terminals, signals, events, stats, the
 * output bound, counts and limits, all as ../shared/API.md says. */
#include <check.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemonlib.h"

static json_int_t proc_wait(const char *id, const char *pid)
{
    char path[256];
    json_t *r =
        dl_call("GET", dl_sbpath(path, sizeof(path), id, "/processes/%s/wait?timeout_s=30", pid),
                NULL, 200);
    json_t *rc = json_object_get(r, "returncode");
    json_int_t v;

    ck_assert_msg(json_is_integer(rc), "process %s has no returncode after 30 s", pid);
    v = json_integer_value(rc);
    json_decref(r);
    return v;
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
    struct dl_buf b = {0};
    json_t *j = NULL;
    long st;

    st = dl_http("POST", "/v1/sandboxes", "{\"image\":\"busybox\"}", 19, &b);
    j = json_loads(b.data, 0, NULL);
    if (st != 201 || !json_string_value(json_object_get(j, "sandbox_id")))
        CLIENT_FAIL("create → %ld: %s", st, b.data);
    snprintf(id, sizeof(id), "%s", dl_str(j, "sandbox_id"));
    json_decref(j), j = NULL, free(b.data), b.data = NULL;

    snprintf(body, sizeof(body), "{\"argv\":[\"sh\",\"-c\",\"echo $0\",\"client-%d\"]}", cl->index);
    st = dl_http("POST", dl_sbpath(path, sizeof(path), id, "/exec"), body, strlen(body), &b);
    j = json_loads(b.data, 0, NULL);
    if (st != 201 || !json_string_value(json_object_get(j, "process_id")))
        CLIENT_FAIL("%s: exec → %ld: %s", id, st, b.data);
    snprintf(pid, sizeof(pid), "%s", dl_str(j, "process_id"));
    json_decref(j), j = NULL, free(b.data), b.data = NULL;

    st = dl_http("GET", dl_sbpath(path, sizeof(path), id, "/processes/%s/stdout?follow=1", pid),
                 NULL, 0, &b);
    snprintf(want, sizeof(want), "client-%d\n", cl->index);
    if (st != 200 || strcmp(b.data, want))
        CLIENT_FAIL("%s/%s: stdout → %ld: \"%s\", want \"client-%d\\n\"", id, pid, st, b.data,
                    cl->index);
    free(b.data), b.data = NULL;

    st = dl_http("GET", dl_sbpath(path, sizeof(path), id, "/processes/%s/wait?timeout_s=30", pid),
                 NULL, 0, &b);
    j = json_loads(b.data, 0, NULL);
    if (st != 200 || !json_is_integer(json_object_get(j, "returncode")) ||
        json_integer_value(json_object_get(j, "returncode")) != 0)
        CLIENT_FAIL("%s/%s: wait → %ld: %s", id, pid, st, b.data);
    json_decref(j), j = NULL, free(b.data), b.data = NULL;

    st =
        dl_http("POST", dl_sbpath(path, sizeof(path), id, "/terminate"), "{\"wait\":true}", 13, &b);
    j = json_loads(b.data, 0, NULL);
    if (st != 200 || json_integer_value(json_object_get(j, "returncode")) != 137 ||
        strcmp(dl_str(j, "state"), "finished"))
        CLIENT_FAIL("%s: terminate → %ld: %s", id, st, b.data);
    json_decref(j), j = NULL, free(b.data), b.data = NULL;

    st = dl_http("DELETE", dl_sbpath(path, sizeof(path), id, ""), NULL, 0, &b);
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
    daemon_fds_before = count_fds(dl_daemon_pid);
    ck_assert_int_gt(daemon_fds_before, 0);

    t0 = dl_now_ms();
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
    fprintf(stderr, "%d clients in %.0f ms, %d failed\n", N_CLIENTS, dl_now_ms() - t0, failed);
    ck_assert_msg(failed == 0, "%d of %d clients failed; first: %s", failed, N_CLIENTS,
                  clients[0].error[0] ? clients[0].error : "(see stderr)");

    /* Idle again: every connection closed, every monitor gone. The daemon
     * may take a moment to notice closed connections and reaped monitors. */
    for (int i = 0; i < 100; i++) {
        daemon_fds_after = count_fds(dl_daemon_pid);
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
        json_t *info = dl_call("GET", "/v1/info", NULL, 200);
        ck_assert_int_eq(json_integer_value(
                             json_object_get(json_object_get(info, "counts"), "sandboxes_running")),
                         0);
        json_decref(info);
    }

    dl_delete_all_and_stop();
    usleep(200000);
    ck_assert_msg(scan_procs(dl_dir, found, sizeof(found)) == 0, "left running: %s", found);
    ck_assert_msg(scan_procs("sandboxd-monitor", found, sizeof(found)) == 0 ||
                      !strstr(found, dl_run),
                  "monitors left running: %s", found);
    ck_assert_msg(scan_mounts(dl_dir, found, sizeof(found)) == 0, "mounts left: %s", found);
    snprintf(cmd, sizeof(cmd), "test -z \"$(find /sys/fs/cgroup -maxdepth 6 -name '%s*')\"",
             dl_cgparent);
    ck_assert_msg(system(cmd) == 0, "cgroup %s left behind", dl_cgparent);
    own_fds_after = count_fds(getpid());
    ck_assert_msg(own_fds_after == own_fds_before, "the test holds %d fds, %d before",
                  own_fds_after, own_fds_before);
}
END_TEST

/* ---- 2. an exec's timeout ends the exec, not the sandbox ---- */

START_TEST(test_exec_timeout)
{
    char *id = dl_create("{\"image\":\"busybox\"}"), *pid, *pid2;
    char path[256];
    struct dl_buf b;
    json_t *r;
    double t0 = dl_now_ms(), took;

    pid = dl_exec_start(id, "[\"sleep\",\"100\"]", "\"timeout_s\":1");
    ck_assert_int_eq(proc_wait(id, pid), 137);
    took = dl_now_ms() - t0;
    ck_assert_msg(took < 3000, "the 1 s exec timeout took %.0f ms", took);
    r = dl_call("GET", dl_sbpath(path, sizeof(path), id, ""), NULL, 200);
    ck_assert_str_ne(dl_str(r, "state"), "finished");
    json_decref(r);
    pid2 = dl_exec_start(id, "[\"echo\",\"still here\"]", NULL);
    b = dl_proc_stdout(id, pid2);
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
    double t0 = dl_now_ms(), took;
    char *id = dl_create("{\"image\":\"busybox\",\"timeout_s\":2}");
    json_t *r = dl_wait_finished(id);

    took = dl_now_ms() - t0;
    ck_assert_str_eq(dl_str(r, "state"), "finished");
    ck_assert_str_eq(dl_str(r, "finish_reason"), "timeout");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "returncode")), 137);
    ck_assert_msg(took >= 1800 && took < 5000, "timeout_s 2 ended it after %.0f ms", took);
    json_decref(r);
    free(id);
}
END_TEST

/* ---- 4. idle timeout waits for a running exec ---- */

START_TEST(test_idle_timeout)
{
    char *id = dl_create("{\"image\":\"busybox\",\"idle_timeout_s\":2}"), *pid;
    char path[256];
    double t0 = dl_now_ms(), took;
    json_t *r;

    pid = dl_exec_start(id, "[\"sleep\",\"5\"]", NULL);
    /* Two idle timeouts pass while the exec runs: the sandbox lives on. */
    r = dl_call("GET", dl_sbpath(path, sizeof(path), id, "/wait?timeout_s=4"), NULL, 200);
    ck_assert_msg(strcmp(dl_str(r, "state"), "finished"),
                  "ended during a running exec, after %.0f ms: %s", dl_now_ms() - t0,
                  dl_str(r, "finish_reason"));
    json_decref(r);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    r = dl_wait_finished(id);
    took = dl_now_ms() - t0;
    ck_assert_str_eq(dl_str(r, "finish_reason"), "idle_timeout");
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
    char *id = dl_create("{\"image\":\"busybox\"}"), *pid;
    char path[256];
    unsigned char bin[1024];
    struct dl_buf b;

    pid = dl_exec_start(id, "[\"cat\"]", NULL);
    dl_sbpath(path, sizeof(path), id, "/processes/%s/stdin", pid);
    ck_assert_int_eq(dl_http("POST", path, "hello ", 6, NULL), 204);
    dl_sbpath(path, sizeof(path), id, "/processes/%s/stdin?eof=1", pid);
    ck_assert_int_eq(dl_http("POST", path, "world", 5, NULL), 204);
    b = dl_proc_stdout(id, pid);
    ck_assert_str_eq(b.data, "hello world");
    free(b.data);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    free(pid);

    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (unsigned char)(i % 256);
    pid = dl_exec_start(id, "[\"cat\"]", NULL);
    dl_sbpath(path, sizeof(path), id, "/processes/%s/stdin?eof=1", pid);
    ck_assert_int_eq(dl_http("POST", path, bin, sizeof(bin), NULL), 204);
    b = dl_proc_stdout(id, pid);
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
    char *id = dl_create("{\"image\":\"busybox\",\"entrypoint\":[\"cat\"]}");
    char path[256];
    struct dl_buf b;
    json_t *r;

    ck_assert_int_eq(
        dl_http("POST", dl_sbpath(path, sizeof(path), id, "/stdin?eof=1"), "x\n", 2, &b), 204);
    free(b.data);
    r = dl_wait_finished(id);
    ck_assert_str_eq(dl_str(r, "state"), "finished");
    ck_assert_int_eq(json_integer_value(json_object_get(r, "returncode")), 0);
    json_decref(r);
    ck_assert_int_eq(dl_http("GET", dl_sbpath(path, sizeof(path), id, "/stdout"), NULL, 0, &b),
                     200);
    ck_assert_str_eq(b.data, "x\n");
    free(b.data);
    free(id);
}
END_TEST

/* ---- 7. a terminal, and its resize ---- */

START_TEST(test_pty)
{
    char *id = dl_create("{\"image\":\"busybox\"}"), *pid;
    char path[256];
    struct dl_buf b;
    long st;

    pid = dl_exec_start(id, "[\"sh\",\"-c\",\"tty; stty size\"]",
                        "\"pty\":{\"rows\":30,\"cols\":100}");
    b = dl_proc_stdout(id, pid);
    ck_assert_msg(strstr(b.data, "/dev/pts/"), "not a terminal: %s", b.data);
    ck_assert_msg(strstr(b.data, "30 100"), "wrong size: %s", b.data);
    free(b.data);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    free(pid);

    pid = dl_exec_start(id, "[\"sh\",\"-c\",\"read a; stty size\"]",
                        "\"pty\":{\"rows\":24,\"cols\":80}");
    dl_sbpath(path, sizeof(path), id, "/processes/%s/resize", pid);
    st = dl_http("POST", path, "{\"rows\":40,\"cols\":120}", 22, NULL);
    ck_assert_msg(st == 200 || st == 204, "resize → %ld", st);
    dl_sbpath(path, sizeof(path), id, "/processes/%s/stdin", pid);
    ck_assert_int_eq(dl_http("POST", path, "\n", 1, NULL), 204);
    b = dl_proc_stdout(id, pid);
    ck_assert_msg(strstr(b.data, "40 120"), "resize not seen: %s", b.data);
    free(b.data);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    dl_sbpath(path, sizeof(path), id, "/processes/%s/resize", pid);
    json_decref(dl_call("POST", path, "{\"rows\":0,\"cols\":120}", 400));
    free(pid);
    free(id);
}
END_TEST

/* ---- 8. signals ---- */

START_TEST(test_signals)
{
    char *id = dl_create("{\"image\":\"busybox\"}"), *pid;
    char path[256];
    struct dl_buf b;
    long st;

    pid = dl_exec_start(id,
                        "[\"sh\",\"-c\",\"trap 'exit 3' TERM; echo ready; "
                        "while :; do sleep 0.1; done\"]",
                        NULL);
    /* Signal only once the trap is set. */
    for (int i = 0;; i++) {
        ck_assert_int_lt(i, 100);
        ck_assert_int_eq(dl_http("GET",
                                 dl_sbpath(path, sizeof(path), id, "/processes/%s/stdout", pid),
                                 NULL, 0, &b),
                         200);
        st = strstr(b.data, "ready") != NULL;
        free(b.data);
        if (st)
            break;
        usleep(50000);
    }
    dl_sbpath(path, sizeof(path), id, "/processes/%s/signal", pid);
    st = dl_http("POST", path, "{\"signal\":15}", 13, NULL);
    ck_assert_msg(st == 200 || st == 204, "signal → %ld", st);
    ck_assert_int_eq(proc_wait(id, pid), 3);

    json_decref(dl_call("POST", path, "{\"signal\":0}", 400));
    json_decref(dl_call("POST", path, "{\"signal\":99}", 400));
    json_decref(dl_call("POST", path, "{\"signal\":\"TERM\"}", 400));
    json_decref(dl_call("POST", path, "{}", 400));
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
        ck_assert_msg(json_is_string(json_object_get(j, "event")), "no event: %.*s", (int)(nl - p),
                      p);
        ck_assert_msg(json_object_get(j, "at") != NULL, "no at: %.*s", (int)(nl - p), p);
        if (next < n_want && !strcmp(dl_str(j, "event"), want[next]))
            next++;
        free(last);
        last = strdup(dl_str(j, "event"));
        json_decref(j);
        p = nl + 1;
    }
    ck_assert_msg(next == n_want, "event `%s` missing or out of order in:\n%s", want[next], ndjson);
    return last;
}

START_TEST(test_events)
{
    static const char *const want[] = {"created", "scheduled", "started", "finished"};
    char *id = dl_create("{\"image\":\"busybox\",\"entrypoint\":[\"true\"]}"), *last;
    char path[256];
    struct dl_buf b;
    double t0;

    json_decref(dl_wait_finished(id));
    ck_assert_int_eq(dl_http("GET", dl_sbpath(path, sizeof(path), id, "/events"), NULL, 0, &b),
                     200);
    last = check_events(b.data, want, 4);
    free(last);
    free(b.data);
    free(id);

    id = dl_create("{\"image\":\"busybox\",\"entrypoint\":[\"sleep\",\"1\"]}");
    t0 = dl_now_ms();
    ck_assert_int_eq(
        dl_http_t("GET", dl_sbpath(path, sizeof(path), id, "/events?follow=1"), NULL, 0, 10, &b),
        200);
    ck_assert_msg(dl_now_ms() - t0 < 5000, "the followed events ended after %.0f ms",
                  dl_now_ms() - t0);
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
    char *id = dl_create("{\"image\":\"busybox\"}");
    char path[256];
    json_t *r = dl_call("GET", dl_sbpath(path, sizeof(path), id, "/stats"), NULL, 200);
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
    struct dl_buf b;
    FILE *f;

    /* Restart the fixture's daemon (it has no sandboxes yet) with a config. */
    dl_restart_with_config("{\"output_limit_bytes\": 65536}");
    {
        json_t *info = dl_call("GET", "/v1/info", NULL, 200);
        ck_assert_int_eq(
            json_integer_value(json_object_get(json_object_get(info, "limits"), "output_limit")),
            65536);
        json_decref(info);
    }

    id = dl_create("{\"image\":\"busybox\"}");
    pid = dl_exec_start(id, "[\"head\",\"-c\",\"1048576\",\"/dev/zero\"]", NULL);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    for (int i = 0; i < 2; i++) {
        dl_sbpath(path, sizeof(path), id, "/processes/%s/stdout%s", pid, i ? "?offset=0" : "");
        ck_assert_int_eq(dl_http("GET", path, NULL, 0, &b), 200);
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

    /* A follower slower than the process, with output past the limit: it
     * never gets a silent gap.  What it got is contiguous from where it
     * started; when it was cut off, resuming at its offset says how much
     * was dropped and continues exactly there. */
    {
        char *want = NULL;
        size_t want_len = 0, got, skipped;
        struct dl_buf tail;
        long st;

        f = open_memstream(&want, &want_len);
        for (int i = 1; i <= 1000000; i++)
            fprintf(f, "%d\n", i);
        fclose(f);
        /* 6.9 MB, written far faster than 1 MB/s, past what the socket's
         * buffers hold: the follower falls behind the 64 KiB kept. */
        pid = dl_exec_start(id, "[\"sh\",\"-c\",\"sleep 0.5; seq 1 1000000\"]", NULL);
        dl_sbpath(path, sizeof(path), id, "/processes/%s/stdout?follow=1", pid);
        dl_recv_bytes_per_s = 1024 * 1024;
        st = dl_http_t("GET", path, NULL, 0, 30, &b);
        dl_recv_bytes_per_s = 0;
        skipped = (size_t)atoll(b.dropped);
        ck_assert_uint_le(skipped + b.len, want_len);
        ck_assert_msg(!memcmp(b.data, want + skipped, b.len),
                      "a followed stream has a gap (started at %zu, %zu bytes)", skipped, b.len);
        got = skipped + b.len;
        free(b.data);
        ck_assert_msg(st != 200, "a slow follower got all %zu bytes through a 64 KiB limit", got);
        {
            ck_assert_int_eq(proc_wait(id, pid), 0);
            dl_sbpath(path, sizeof(path), id, "/processes/%s/stdout?offset=%zu", pid, got);
            ck_assert_int_eq(dl_http("GET", path, NULL, 0, &tail), 200);
            ck_assert_msg(atoll(tail.dropped) > 0, "resumed at %zu: X-Sandboxd-Dropped: %s", got,
                          tail.dropped);
            got += (size_t)atoll(tail.dropped);
            ck_assert_uint_eq(got + tail.len, want_len);
            ck_assert_msg(!memcmp(tail.data, want + got, tail.len), "the resumed tail differs");
            free(tail.data);
        }
        free(want);
        free(pid);
    }
    free(id);
}
END_TEST

/* A follower of a stream that spans several segment files while it is
 * written gets every byte once, in order; so does a later read from an
 * offset in the middle. */
START_TEST(test_output_segments)
{
    char *id, *pid, *want;
    char path[256];
    struct dl_buf b;
    size_t want_len = 0;
    FILE *f;

    /* Segments of 2 MiB (a quarter of the limit); seq writes ~6.9 MB. */
    dl_restart_with_config("{\"output_limit_bytes\": 8388608}");
    f = open_memstream(&want, &want_len);
    for (int i = 1; i <= 1000000; i++)
        fprintf(f, "%d\n", i);
    fclose(f);

    id = dl_create("{\"image\":\"busybox\"}");
    pid = dl_exec_start(id, "[\"seq\",\"1\",\"1000000\"]", NULL);
    dl_sbpath(path, sizeof(path), id, "/processes/%s/stdout?follow=1", pid);
    ck_assert_int_eq(dl_http("GET", path, NULL, 0, &b), 200);
    ck_assert_uint_eq(b.len, want_len);
    ck_assert_msg(!memcmp(b.data, want, want_len), "followed output differs");
    ck_assert_str_eq(b.dropped, "");
    free(b.data);
    ck_assert_int_eq(proc_wait(id, pid), 0);
    dl_sbpath(path, sizeof(path), id, "/processes/%s/stdout?offset=2097000", pid);
    ck_assert_int_eq(dl_http("GET", path, NULL, 0, &b), 200);
    ck_assert_uint_eq(b.len, want_len - 2097000);
    ck_assert_msg(!memcmp(b.data, want + 2097000, b.len), "output read from an offset differs");
    free(b.data);
    free(want);
    free(pid);
    free(id);
}
END_TEST

/* ---- 12. /v1/info counts and /metrics ---- */

static json_int_t running_count(void)
{
    json_t *info = dl_call("GET", "/v1/info", NULL, 200);
    json_int_t n =
        json_integer_value(json_object_get(json_object_get(info, "counts"), "sandboxes_running"));
    json_decref(info);
    return n;
}

START_TEST(test_info_and_metrics)
{
    json_int_t n0 = running_count();
    char *id = dl_create("{\"image\":\"busybox\"}");
    char path[256];
    struct dl_buf b;
    char *line, *save = NULL;
    int samples = 0;

    ck_assert_int_eq(running_count(), n0 + 1);
    json_decref(
        dl_call("POST", dl_sbpath(path, sizeof(path), id, "/terminate"), "{\"wait\":true}", 200));
    ck_assert_int_eq(running_count(), n0);

    ck_assert_int_eq(dl_http("GET", "/metrics", NULL, 0, &b), 200);
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
            ck_assert_msg(isalnum((unsigned char)*c) || *c == '_' || *c == ':', "bad name: %s",
                          line);
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
    char *id = dl_create("{\"image\":\"busybox\",\"memory_mib\":32,"
                         "\"entrypoint\":[\"sh\",\"-c\",\"x=a; while :; do x=$x$x; done\"]}");
    json_t *r = dl_wait_finished(id);

    ck_assert_str_eq(dl_str(r, "state"), "finished");
    ck_assert_str_eq(dl_str(r, "finish_reason"), "oom");
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
    int failed, rc = dl_init("ltest");

    if (rc != 0)
        return rc;
    tcase_add_checked_fixture(tc, dl_setup, dl_teardown);
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
    tcase_add_test(tc, test_output_segments);
    tcase_add_test(tc, test_info_and_metrics);
    tcase_add_test(tc, test_oom);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    dl_final_sweep();
    return failed ? 1 : 0;
}
