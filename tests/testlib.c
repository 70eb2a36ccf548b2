/* testlib.c — see testlib.h. */
#include "testlib.h"
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static struct sbx_image *busybox;

static const char *store_dir(void)
{
    const char *s = getenv("SBX_STATE_DIR");
    return s && *s ? s : "/var/lib/sandboxd";
}

static const char *probe_path(void)
{
    const char *p = getenv("SBX_TEST_PROBE");
    return p && *p ? p : "tests/sbx-probe";
}

/* Every test's directories and cgroups live under roots named by the test
 * runner's pid, so that sbx_test_final_sweep() finds what a failed test (whose
 * teardown never ran) left behind. */
static pid_t runner_pid;
static char run_root[64], state_root[64];

void sbx_test_require(void)
{
    sbx_error err;

    if (geteuid() != 0) {
        printf("SKIP: these tests create namespaces, cgroups and mounts: run them as root\n");
        exit(77);
    }
    if (sbx_image_load(store_dir(), "busybox", &busybox, &err) < 0) {
        printf("SKIP: %s (run runtime/images/sbx-mkimage busybox)\n", err.message);
        exit(77);
    }
    if (access(probe_path(), X_OK) < 0) {
        printf("SKIP: the probe `%s` is not built (make check builds it)\n", probe_path());
        exit(77);
    }
    runner_pid = getpid();
    snprintf(run_root, sizeof(run_root), "/run/sbx-test.%d", (int)runner_pid);
    snprintf(state_root, sizeof(state_root), "/var/tmp/sbx-test.%d", (int)runner_pid);
    /* The sandboxes' roots (unprivileged host uids) must traverse these. */
    if ((mkdir(run_root, 0711) < 0 && errno != EEXIST) ||
        (mkdir(state_root, 0711) < 0 && errno != EEXIST)) {
        printf("cannot make test roots: %s\n", strerror(errno));
        exit(1);
    }
}

static void copy_file(const char *src, const char *dst, mode_t mode)
{
    char buf[65536];
    int in = open(src, O_RDONLY | O_CLOEXEC), out;
    ssize_t n;

    ck_assert_msg(in >= 0, "open %s: %s", src, strerror(errno));
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    ck_assert_msg(out >= 0, "create %s: %s", dst, strerror(errno));
    while ((n = read(in, buf, sizeof(buf))) > 0)
        ck_assert_int_eq(write(out, buf, (size_t)n), n);
    close(in);
    close(out);
}

void sbx_test_setup(struct sbx_test_ctx *ctx)
{
    char path[PATH_MAX + 64];

    if (!busybox)
        sbx_test_require();
    memset(ctx, 0, sizeof(*ctx));
    snprintf(ctx->run_dir, sizeof(ctx->run_dir), "%s/XXXXXX", run_root);
    ck_assert_msg(mkdtemp(ctx->run_dir), "mkdtemp: %s", strerror(errno));
    snprintf(ctx->state_dir, sizeof(ctx->state_dir), "%s/%s", state_root,
             strrchr(ctx->run_dir, '/') + 1);
    ck_assert_msg(mkdir(ctx->state_dir, 0711) == 0, "mkdir %s: %s", ctx->state_dir,
                  strerror(errno));
    /* The sandbox's root (an unprivileged host uid) must traverse these. */
    chmod(ctx->run_dir, 0711);

    snprintf(ctx->probe_layer, sizeof(ctx->probe_layer), "%s/probe-layer", ctx->state_dir);
    snprintf(path, sizeof(path), "%s/usr/local/bin", ctx->probe_layer);
    ck_assert_int_eq(system(NULL) != 0, 1);
    {
        char cmd[PATH_MAX + 32];
        snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", path);
        ck_assert_int_eq(system(cmd), 0);
    }
    snprintf(path, sizeof(path), "%s%s", ctx->probe_layer, PROBE);
    copy_file(probe_path(), path, 0755);

    ctx->layers[0] = ctx->probe_layer;
    ctx->layers[1] = busybox->layers[0];
    ctx->layers[2] = NULL;
    ctx->env = busybox->env;
    snprintf(ctx->cgroup_parent, sizeof(ctx->cgroup_parent), "sandboxd-test-%d", (int)runner_pid);
}

struct sbx_config sbx_test_config(struct sbx_test_ctx *ctx)
{
    static char ids[64][32];
    char *id = ids[ctx->counter % 64];

    snprintf(id, sizeof(ids[0]), "t%d-%d", (int)getpid(), ctx->counter++);
    return (struct sbx_config){
        .id = id,
        .run_dir = ctx->run_dir,
        .state_dir = ctx->state_dir,
        .layers = (const char *const *)ctx->layers,
        .env = (const char *const *)ctx->env,
        .stdio = {-1, -1, -1},
        .cgroup_parent = ctx->cgroup_parent,
    };
}

/* Reads everything from fd until EOF. */
static char *read_all(int fd)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t n;

    ck_assert_ptr_nonnull(buf);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
        n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

char *sbx_test_run(struct sbx_test_ctx *ctx, const struct sbx_config *cfg_in,
                   const char *const *argv, struct sbx_exit *ret_exit)
{
    struct sbx_config cfg = cfg_in ? *cfg_in : sbx_test_config(ctx);
    sbx_sandbox *sb = NULL;
    sbx_error err = {0};
    int pipefd[2];
    char *out;

    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    cfg.argv = argv;
    cfg.stdio[1] = pipefd[1];
    cfg.stdio[2] = pipefd[1];
    ck_assert_msg(sbx_sandbox_create(&cfg, &sb, &err) == 0, "create: %s", err.message);
    close(pipefd[1]);
    out = read_all(pipefd[0]);
    close(pipefd[0]);
    ck_assert_msg(sbx_sandbox_wait(sb, 60000, ret_exit, &err) == 1, "wait: %s", err.message);
    ck_assert_msg(sbx_sandbox_destroy(sb, &err) == 0, "destroy: %s", err.message);
    return out;
}

char *sbx_test_exec(sbx_sandbox *sb, const char *const *argv, const char *const *env,
                    const char *workdir, int *ret_returncode)
{
    struct sbx_exec_config ec = {.argv = argv, .env = env, .workdir = workdir};
    struct sbx_process p;
    sbx_error err = {0};
    int pipefd[2];
    char *out;

    ck_assert_int_eq(pipe2(pipefd, O_CLOEXEC), 0);
    ec.stdio[0] = -1;
    ec.stdio[1] = pipefd[1];
    ec.stdio[2] = pipefd[1];
    ck_assert_msg(sbx_sandbox_exec(sb, &ec, &p, &err) == 0, "exec: %s", err.message);
    close(pipefd[1]);
    out = read_all(pipefd[0]);
    close(pipefd[0]);
    ck_assert_msg(sbx_process_wait(&p, 60000, ret_returncode, &err) == 1, "wait: %s", err.message);
    return out;
}

const char *sbx_test_value(const char *out, const char *key)
{
    static char buf[512];
    size_t klen = strlen(key);

    for (const char *line = out; line && *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);

        if (len > klen && !strncmp(line, key, klen) && line[klen] == ' ') {
            size_t vlen = len - klen - 1;
            if (vlen >= sizeof(buf))
                vlen = sizeof(buf) - 1;
            memcpy(buf, line + klen + 1, vlen);
            buf[vlen] = '\0';
            return buf;
        }
        line = nl ? nl + 1 : NULL;
    }
    return NULL;
}

char *sbx_test_slurp(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *s;

    if (fd < 0)
        return NULL;
    s = read_all(fd);
    close(fd);
    return s;
}

int sbx_test_count_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    int n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    closedir(d);
    return n;
}

/* Finds directories named `name` under dir (depth-limited) and removes them;
 * returns how many child cgroups (sandboxes) it found still inside them. */
static int sweep_cgroups(const char *dir, const char *name, int depth)
{
    DIR *d;
    struct dirent *de;
    int left = 0;

    if (depth > 5 || !(d = opendir(dir)))
        return 0;
    while ((de = readdir(d))) {
        char path[PATH_MAX];

        if (de->d_type != DT_DIR || de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (!strcmp(de->d_name, name)) {
            DIR *c = opendir(path);
            struct dirent *ce;
            while (c && (ce = readdir(c))) {
                char sub[PATH_MAX + 256];
                if (ce->d_type != DT_DIR || ce->d_name[0] == '.')
                    continue;
                left++;
                snprintf(sub, sizeof(sub), "%s/%s", path, ce->d_name);
                rmdir(sub);
            }
            if (c)
                closedir(c);
            rmdir(path);
        } else {
            left += sweep_cgroups(path, name, depth + 1);
        }
    }
    closedir(d);
    return left;
}

void sbx_test_teardown(struct sbx_test_ctx *ctx)
{
    char path[PATH_MAX + 32], cmd[2 * PATH_MAX];
    int status, run_left, uids_left, state_left, cgroups_left;
    bool child_left;

    /* Count first and remove the temporary trees before asserting, so that
     * a failing test still leaves nothing on the machine. */
    child_left = !(waitpid(-1, &status, WNOHANG) < 0 && errno == ECHILD);
    snprintf(path, sizeof(path), "%s/sandboxes", ctx->run_dir);
    run_left = sbx_test_count_dir(path);
    snprintf(path, sizeof(path), "%s/uids", ctx->run_dir);
    uids_left = sbx_test_count_dir(path);
    snprintf(path, sizeof(path), "%s/sandboxes", ctx->state_dir);
    state_left = sbx_test_count_dir(path);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", ctx->run_dir, ctx->state_dir);
    ck_assert_int_eq(system(cmd), 0);
    cgroups_left = sweep_cgroups("/sys/fs/cgroup", ctx->cgroup_parent, 0);

    ck_assert_msg(cgroups_left == 0, "%d sandbox cgroups left behind", cgroups_left);
    ck_assert_msg(!child_left, "a child process was left behind");
    ck_assert_msg(run_left <= 0, "%d run dirs left behind", run_left);
    ck_assert_msg(uids_left <= 0, "%d uid reservations left behind", uids_left);
    ck_assert_msg(state_left <= 0, "%d state dirs left behind", state_left);
}

int sbx_test_final_sweep(void)
{
    char parent[64], cmd[256];
    int left = 0;
    DIR *d;
    struct dirent *de;

    snprintf(parent, sizeof(parent), "sandboxd-test-%d", (int)runner_pid);
    d = opendir(run_root);
    while (d && (de = readdir(d))) {
        char run[PATH_MAX], state[PATH_MAX], sbs[PATH_MAX + 16];
        DIR *sd;
        struct dirent *se;

        if (de->d_name[0] == '.')
            continue;
        snprintf(run, sizeof(run), "%s/%s", run_root, de->d_name);
        snprintf(state, sizeof(state), "%s/%s", state_root, de->d_name);
        snprintf(sbs, sizeof(sbs), "%s/sandboxes", run);
        sd = opendir(sbs);
        while (sd && (se = readdir(sd))) {
            sbx_error err;
            if (se->d_name[0] == '.')
                continue;
            left++;
            if (sbx_sandbox_cleanup(run, state, parent, se->d_name, &err) < 0)
                fprintf(stderr, "sweep: %s\n", err.message);
        }
        if (sd)
            closedir(sd);
    }
    if (d)
        closedir(d);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", run_root, state_root);
    if (system(cmd) != 0)
        left++;
    left += sweep_cgroups("/sys/fs/cgroup", parent, 0);
    return left;
}
