/* daemonlib.c — the real sandboxd for a test: start, stop, talk to it with
 * libcurl over its unix socket, and clean up after it (daemonlib.h). */
#include "daemonlib.h"

#include <check.h>
#include <ctype.h>
#include <curl/curl.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

char dl_dir[64], dl_sock[128], dl_run[128], dl_cgparent[64], dl_bridge[16], dl_subnet[32];
pid_t dl_daemon_pid;

static char state[128];
/* Each test works in its own directory under this one, made by dl_init(). */
static char session[64];
static char tag[16];

static const char *env_or(const char *k, const char *dflt)
{
    const char *v = getenv(k);
    return v && *v ? v : dflt;
}

double dl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t on_data(char *p, size_t sz, size_t n, void *ud)
{
    struct dl_buf *b = ud;
    char *nd;

    if (b->len == 0 && sz * n > 0)
        b->first_at = dl_now_ms();
    nd = realloc(b->data, b->len + sz * n + 1);
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
    struct dl_buf *b = ud;
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

long dl_recv_bytes_per_s;

long dl_http_t(const char *method, const char *path, const void *body, size_t body_len,
               long timeout_s, struct dl_buf *ret)
{
    CURL *c = curl_easy_init();
    char url[1024];
    long status = 0;
    struct dl_buf b = {0};

    snprintf(url, sizeof(url), "http://localhost%s", path);
    curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, dl_sock);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &b);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (dl_recv_bytes_per_s) {
        curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)dl_recv_bytes_per_s);
        curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 1024L);
    }
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

long dl_http(const char *method, const char *path, const void *body, size_t body_len,
             struct dl_buf *ret)
{
    return dl_http_t(method, path, body, body_len, 60, ret);
}

json_t *dl_call(const char *method, const char *path, const char *body, long want)
{
    struct dl_buf b;
    long st = dl_http(method, path, body, body ? strlen(body) : 0, &b);
    json_error_t e;
    json_t *j;

    ck_assert_msg(st == want, "%s %s → %ld, want %ld: %s", method, path, st, want, b.data);
    j = json_loads(b.data, JSON_DECODE_ANY, &e);
    free(b.data);
    return j;
}

const char *dl_sbpath(char *out, size_t n, const char *id, const char *fmt, ...)
{
    va_list ap;
    int k = snprintf(out, n, "/v1/sandboxes/%s", id);

    va_start(ap, fmt);
    vsnprintf(out + k, n - (size_t)k, fmt, ap);
    va_end(ap);
    return out;
}

const char *dl_str(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "(none)";
}

/* Points the dl_ paths at directory d. */
static void use_dir(const char *d)
{
    snprintf(dl_dir, sizeof(dl_dir), "%s", d);
    snprintf(dl_sock, sizeof(dl_sock), "%s/sandboxd.sock", dl_dir);
    snprintf(state, sizeof(state), "%s/state", dl_dir);
    snprintf(dl_run, sizeof(dl_run), "%s/run", dl_dir);
}

bool dl_spawn_daemon(const char *config)
{
    dl_daemon_pid = fork();
    if (dl_daemon_pid < 0)
        return false;
    if (dl_daemon_pid == 0) {
        const char *image_store = env_or("SBX_STATE_DIR", "/var/lib/sandboxd");
        const char *monitor = env_or("SBX_MONITOR", "./sandboxd-monitor");
        const char *daemon = env_or("SBX_DAEMON", "./sandboxd");

        /* The list ends at the first NULL: no config, no --config. */
        execl(daemon, "sandboxd", "--socket", dl_sock, "--state-dir", state, "--run-dir", dl_run,
              "--image-store", image_store, "--monitor", monitor, "--cgroup-parent", dl_cgparent,
              "--bridge", dl_bridge, "--subnet", dl_subnet, config ? "--config" : (char *)NULL,
              config, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        if (dl_http("GET", "/v1/health", NULL, 0, NULL) == 200)
            return true;
        if (waitpid(dl_daemon_pid, NULL, WNOHANG) == dl_daemon_pid) {
            dl_daemon_pid = 0; /* it gave up */
            return false;
        }
        usleep(10000);
    }
    return false;
}

void dl_start_daemon(const char *config)
{
    ck_assert_msg(dl_spawn_daemon(config), "the daemon did not come up");
}

void dl_restart_with_config(const char *config_json)
{
    char config[128];
    FILE *f;

    dl_stop_daemon(SIGTERM);
    snprintf(config, sizeof(config), "%s/sandboxd.json", dl_dir);
    f = fopen(config, "we");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%s\n", config_json);
    ck_assert_int_eq(fclose(f), 0);
    dl_start_daemon(config);
}

void dl_stop_daemon(int sig)
{
    if (dl_daemon_pid > 0) {
        kill(dl_daemon_pid, sig);
        waitpid(dl_daemon_pid, NULL, 0);
        dl_daemon_pid = 0;
    }
}

/* Deletes every sandbox the daemon knows and stops it, through `list`, the
 * answer to GET /v1/sandboxes?state=all. */
static void delete_listed_and_stop(json_t *list, long timeout_s)
{
    char path[256];
    json_t *sb;
    size_t i;

    json_array_foreach(json_object_get(list, "sandboxes"), i, sb)
    {
        snprintf(path, sizeof(path), "/v1/sandboxes/%s", dl_str(sb, "sandbox_id"));
        dl_http_t("DELETE", path, NULL, 0, timeout_s, NULL);
    }
    json_decref(list);
    /* Volumes too: one with a size cap is a mount (with a loop device)
     * that would outlive the daemon. */
    {
        struct dl_buf b;
        json_t *vols = NULL, *v;
        if (dl_http_t("GET", "/v1/volumes", NULL, 0, timeout_s, &b) == 200)
            vols = json_loads(b.data, 0, NULL);
        if (b.data)
            free(b.data);
        json_array_foreach(json_object_get(vols, "volumes"), i, v)
        {
            snprintf(path, sizeof(path), "/v1/volumes/%s", dl_str(v, "name"));
            dl_http_t("DELETE", path, NULL, 0, timeout_s, NULL);
        }
        json_decref(vols);
    }
    usleep(200000);
    dl_stop_daemon(SIGTERM);
}

void dl_delete_all_and_stop(void)
{
    if (dl_daemon_pid <= 0)
        return;
    delete_listed_and_stop(dl_call("GET", "/v1/sandboxes?state=all", NULL, 200), 60);
}

void dl_net_names(char bridge[16], char subnet[32])
{
    /* Never the host's own (a daemon may run there, on sbx0): one per test
     * program, each test's daemon in turn. */
    snprintf(bridge, 16, "sbxd%d", (int)(getpid() % 100000));
    snprintf(subnet, 32, "10.215.%d.0/24", (int)(getpid() % 250));
}

int dl_init(const char *name)
{
    if (geteuid() != 0) {
        printf("SKIP: the daemon makes namespaces and cgroups: run as root\n");
        return 77;
    }
    if (access("/var/lib/sandboxd/images/busybox/config.json", F_OK) < 0 &&
        !getenv("SBX_STATE_DIR")) {
        printf("SKIP: no busybox image (runtime/images/sbx-mkimage busybox)\n");
        return 77;
    }
    snprintf(tag, sizeof(tag), "%s", name);
    dl_net_names(dl_bridge, dl_subnet);
    snprintf(session, sizeof(session), "/run/sbx-%s.XXXXXX", tag);
    if (!mkdtemp(session)) {
        perror(session);
        return 99;
    }
    chmod(session, 0711);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

void dl_final_sweep(void)
{
    DIR *d = opendir(session);
    struct dirent *e;
    char cmd[256];

    while (d && (e = readdir(d))) {
        char path[300], config[300];
        struct dl_buf b;
        FILE *f;

        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", session, e->d_name);
        use_dir(path);
        snprintf(config, sizeof(config), "%s/sandboxd.json", dl_dir);
        snprintf(path, sizeof(path), "%s/cgroup-parent", dl_dir);
        f = fopen(path, "re");
        if (!f || !fgets(dl_cgparent, sizeof(dl_cgparent), f)) {
            if (f)
                fclose(f);
            continue;
        }
        fclose(f);
        fprintf(stderr, "cleaning up after a failed test in %s\n", dl_dir);
        if (!dl_spawn_daemon(access(config, F_OK) == 0 ? config : NULL)) {
            dl_stop_daemon(SIGKILL);
            continue;
        }
        dl_http_t("GET", "/v1/sandboxes?state=all", NULL, 0, 10, &b);
        delete_listed_and_stop(json_loads(b.data, 0, NULL), 10);
        free(b.data);
    }
    if (d)
        closedir(d);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", session);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", session);
    curl_global_cleanup();
}

void dl_setup(void)
{
    char path[128];
    FILE *f;

    snprintf(path, sizeof(path), "%s/t.XXXXXX", session);
    ck_assert_ptr_nonnull(mkdtemp(path));
    chmod(path, 0711);
    use_dir(path);
    snprintf(dl_cgparent, sizeof(dl_cgparent), "sandboxd-%s-%d", tag, (int)getpid());
    /* For dl_final_sweep(), should this test fail. */
    snprintf(path, sizeof(path), "%s/cgroup-parent", dl_dir);
    f = fopen(path, "we");
    ck_assert_ptr_nonnull(f);
    fputs(dl_cgparent, f);
    fclose(f);
    dl_start_daemon(NULL);
}

void dl_teardown(void)
{
    char cmd[256];

    dl_delete_all_and_stop();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dl_dir);
    ck_assert_int_eq(system(cmd), 0);
    /* Every sandbox was deleted and the daemon stopped with none running: it
     * pruned its cgroup parent. */
    snprintf(cmd, sizeof(cmd), "test -z \"$(find /sys/fs/cgroup -maxdepth 6 -name '%s*')\"",
             dl_cgparent);
    ck_assert_msg(system(cmd) == 0, "cgroup parent %s left behind", dl_cgparent);
}

char *dl_create(const char *body)
{
    json_t *r = dl_call("POST", "/v1/sandboxes", body, 201);
    char *id = strdup(json_string_value(json_object_get(r, "sandbox_id")));
    json_decref(r);
    return id;
}

json_t *dl_wait_finished(const char *id)
{
    char path[128];
    return dl_call("GET", dl_sbpath(path, sizeof(path), id, "/wait?timeout_s=30"), NULL, 200);
}

char *dl_exec_start(const char *id, const char *argv_json, const char *extra)
{
    char path[256], body[2048];
    json_t *r;
    char *pid;

    snprintf(body, sizeof(body), "{\"argv\":%s%s%s}", argv_json, extra ? "," : "",
             extra ? extra : "");
    r = dl_call("POST", dl_sbpath(path, sizeof(path), id, "/exec"), body, 201);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(r, "process_id")));
    pid = strdup(json_string_value(json_object_get(r, "process_id")));
    json_decref(r);
    return pid;
}

struct dl_buf dl_proc_stdout(const char *id, const char *pid)
{
    char path[256];
    struct dl_buf b;

    ck_assert_int_eq(
        dl_http("GET", dl_sbpath(path, sizeof(path), id, "/processes/%s/stdout?follow=1", pid),
                NULL, 0, &b),
        200);
    return b;
}

char *dl_exec_out(const char *id, const char *cmd)
{
    char argv_json[1024], *pid;
    struct dl_buf b;

    snprintf(argv_json, sizeof(argv_json), "[\"sh\",\"-c\",\"%s\"]", cmd);
    pid = dl_exec_start(id, argv_json, NULL);
    b = dl_proc_stdout(id, pid);
    free(pid);
    return b.data;
}
