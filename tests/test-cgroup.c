/* test-cgroup.c — the cgroup backends, for real: limits are read back from
 * the kernel's files and enforced on forked children.  The v1 tests need a
 * host with v1 controllers mounted; the v2 tests run the v2 backend on a
 * cgroup2 mount with no controllers for us (a hybrid host's
 * /sys/fs/cgroup/unified) and skip, saying why, what needs a controller.
 *
 * Every test uses its own cgroup parent, "sandboxd-cgtest-<run>-<pid>", and
 * the fixture removes it from every hierarchy afterwards, failing the test if
 * a sandbox's cgroup was left in it.  A failed assertion ends the test before
 * its teardown, so a sweep after each test case removes whatever this run
 * left under "sandboxd-cgtest-<run>-". */
#include "internal.h"

#include <check.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>

static const char *const v1_controllers[] = {"memory", "pids", "cpu", "cpuacct", "freezer"};

static char run_prefix[64]; /* "sandboxd-cgtest-<runner pid>-" */
static char parent[96];
static const char *v2_root; /* a cgroup2 mount with no controllers for us, or NULL */
static const char *v1_skip; /* why the v1 tests cannot run here, or NULL */
static const char *v2_skip;

/* ---- helpers ---- */

static void sleep_ms(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The directory <parent>[/<id>] in every hierarchy a backend may use. */
static size_t own_dirs(char out[][PATH_MAX], size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < SBX_ARRAY_SIZE(v1_controllers) && n < max; i++) {
        _cleanup_free_ char *own = NULL;

        if (sbx__cgroup_v1_own_dir(v1_controllers[i], &own, NULL) == 0)
            snprintf(out[n++], PATH_MAX, "%s", own);
    }
    if (v2_root && n < max) {
        _cleanup_free_ char *own = NULL;
        _cleanup_free_ char *dir = NULL;

        if (sbx__cgroup_own_path(NULL, &own, NULL) == 0 &&
            sbx__cgroup_join(v2_root, own, NULL, &dir, NULL) == 0)
            snprintf(out[n++], PATH_MAX, "%s", dir);
    }
    return n;
}

static size_t hierarchy_dirs(const char *id, char out[][PATH_MAX], size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < SBX_ARRAY_SIZE(v1_controllers) && n < max; i++) {
        _cleanup_free_ char *own = NULL;

        if (sbx__cgroup_v1_own_dir(v1_controllers[i], &own, NULL) < 0)
            continue;
        snprintf(out[n++], PATH_MAX, "%s/%s%s%s", own, parent, id ? "/" : "", id ? id : "");
    }
    if (v2_root && n < max) {
        _cleanup_free_ char *own = NULL;
        _cleanup_free_ char *dir = NULL;

        ck_assert_int_eq(sbx__cgroup_own_path(NULL, &own, NULL), 0);
        ck_assert_int_eq(sbx__cgroup_join(v2_root, own, parent, &dir, NULL), 0);
        snprintf(out[n++], PATH_MAX, "%s%s%s", dir, id ? "/" : "", id ? id : "");
    }
    return n;
}

static bool exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static int count_subdirs(const char *dir)
{
    _cleanup_closedir_ DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (!d)
        return -1;
    while ((de = readdir(d))) {
        if (de->d_type == DT_DIR && strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
            n++;
    }
    return n;
}

static int count_procs(const char *dir)
{
    char buf[16384];
    int n = 0;

    if (sbx__cgroup_read(dir, "cgroup.procs", buf, sizeof(buf), NULL) < 0)
        return -1;
    for (char *p = buf; *p; p++)
        n += *p == '\n';
    return n;
}

static bool procs_has(const char *dir, pid_t pid)
{
    char buf[16384], needle[32];

    if (sbx__cgroup_read(dir, "cgroup.procs", buf, sizeof(buf), NULL) < 0)
        return false;
    snprintf(needle, sizeof(needle), "\n%d\n", (int)pid);
    memmove(buf + 1, buf, strlen(buf) + 1);
    buf[0] = '\n';
    return strstr(buf, needle) != NULL;
}

static int open_fds(void)
{
    _cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)))
        n += de->d_name[0] != '.';
    return n;
}

/* Reaps every child (we are a subreaper, so orphaned grandchildren too),
 * waiting up to timeout_ms; returns how many were left unreaped. */
static int reap_all(long timeout_ms)
{
    double deadline = now_s() + (double)timeout_ms / 1000;

    for (;;) {
        pid_t p = waitpid(-1, NULL, WNOHANG);

        if (p < 0)
            return 0; /* ECHILD: none left */
        if (p > 0)
            continue;
        if (now_s() > deadline)
            return 1;
        sleep_ms(5);
    }
}

/* Forks a child that blocks until released, then runs fn.  The pipe lets
 * the test attach the child before it does anything. */
struct child {
    pid_t pid;
    int go;
};

static struct child spawn(void (*fn)(void *), void *arg)
{
    int p[2];
    struct child c;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    c.pid = fork();
    ck_assert_int_ge(c.pid, 0);
    if (c.pid == 0) {
        char b;

        close(p[1]);
        if (read(p[0], &b, 1) != 1)
            _exit(100);
        close(p[0]);
        fn(arg);
        _exit(0);
    }
    close(p[0]);
    c.go = p[1];
    return c;
}

static void release(struct child *c)
{
    ck_assert_int_eq(write(c->go, "g", 1), 1);
    close(c->go);
    c->go = -1;
}

static int wait_child(pid_t pid, long timeout_ms)
{
    double deadline = now_s() + (double)timeout_ms / 1000;
    int st;

    for (;;) {
        pid_t p = waitpid(pid, &st, WNOHANG);

        ck_assert_int_ge(p, 0);
        if (p == pid)
            return st;
        ck_assert_msg(now_s() < deadline, "child %d did not exit", (int)pid);
        sleep_ms(5);
    }
}

static void assert_killed(pid_t pid)
{
    int st = wait_child(pid, 5000);

    ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "child %d: status 0x%x", (int)pid,
                  st);
}

static void do_pause(void *arg)
{
    (void)arg;
    for (;;)
        pause();
}

static void do_spin(void *arg)
{
    volatile unsigned long n = 0;

    (void)arg;
    for (;;)
        n++;
}

static void do_touch_and_spin(void *arg)
{
    size_t len = (size_t)(uintptr_t)arg;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (m == MAP_FAILED)
        _exit(101);
    for (size_t i = 0; i < len; i += 4096)
        m[i] = 1;
    do_spin(NULL);
}

static struct sbx__cgroup *create_ok(const struct sbx__cgroup_ops *ops, const char *id,
                                     const struct sbx_limits *lim)
{
    struct sbx__cgroup *cg = NULL;
    sbx_error err = {0};
    int r = ops->create(parent, id, lim, &cg, &err);

    ck_assert_msg(r == 0, "create %s: %d %s", id, r, err.message);
    ck_assert_ptr_nonnull(cg);
    return cg;
}

static void attach_ok(struct sbx__cgroup *cg, pid_t pid)
{
    sbx_error err = {0};
    int r = cg->ops->attach(cg, pid, &err);

    ck_assert_msg(r == 0, "attach %d: %d %s", (int)pid, r, err.message);
}

static void destroy_ok(struct sbx__cgroup *cg)
{
    sbx_error err = {0};
    int r = cg->ops->destroy(cg, &err);

    ck_assert_msg(r == 0, "destroy: %d %s", r, err.message);
}

static struct sbx_stats stats_ok(struct sbx__cgroup *cg)
{
    struct sbx_stats s;
    sbx_error err = {0};
    int r = cg->ops->stats(cg, &s, &err);

    ck_assert_msg(r == 0, "stats: %d %s", r, err.message);
    return s;
}

static void read_eq(const char *dir, const char *file, const char *want)
{
    char buf[256];
    sbx_error err = {0};

    ck_assert_msg(sbx__cgroup_read(dir, file, buf, sizeof(buf), &err) >= 0, "%s", err.message);
    buf[strcspn(buf, "\n")] = '\0';
    ck_assert_msg(!strcmp(buf, want), "%s/%s: `%s`, want `%s`", dir, file, buf, want);
}

/* ---- fixture ---- */

/* Thaws (a v1 frozen process dies only once thawed) and kills. */
static int kill_listed(struct sbx__cgroup *cg, sbx_error *err)
{
    for (size_t i = 0; i < cg->n_dirs; i++) {
        int r;

        if (sbx__cgroup_file_exists(cg->dirs[i], "freezer.state"))
            (void)sbx__cgroup_write(cg->dirs[i], "freezer.state", "THAWED", NULL);
        r = sbx__cgroup_kill_listed(cg->dirs[i], err);
        if (r < 0)
            return r;
    }
    return 0;
}

static void setup(void)
{
    snprintf(parent, sizeof(parent), "%s%d", run_prefix, (int)getpid());
    /* Orphaned grandchildren come to us, so the tests can reap them all. */
    ck_assert_int_eq(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    sbx__cgroup_v2_set_root(v2_root);
}

static void teardown(void)
{
    char dirs[SBX__CGROUP_MAX_DIRS + 1][PATH_MAX];
    size_t n = hierarchy_dirs(NULL, dirs, SBX_ARRAY_SIZE(dirs));
    int leftover = 0;

    for (size_t i = 0; i < n; i++) {
        struct sbx__cgroup cg = {.n_dirs = 1, .dirs = {dirs[i]}, .oom_fd = -1};
        sbx_error err = {0};
        int c = count_subdirs(dirs[i]);

        if (c > 0) {
            fprintf(stderr, "teardown: %d cgroup(s) left in %s\n", c, dirs[i]);
            leftover += c;
        }
        /* Remove it all the same, so no test leaves anything behind. */
        ck_assert_msg(sbx__cgroup_teardown(&cg, kill_listed, &err) == 0, "%s", err.message);
    }
    sbx__cgroup_v2_set_root(NULL);
    ck_assert_int_eq(reap_all(5000), 0);
    ck_assert_int_eq(leftover, 0);
}

/* Runs in the runner process after each test case, best effort. */
static void sweep(void)
{
    char dirs[SBX__CGROUP_MAX_DIRS + 1][PATH_MAX];
    size_t n = own_dirs(dirs, SBX_ARRAY_SIZE(dirs));

    for (size_t i = 0; i < n; i++) {
        _cleanup_closedir_ DIR *d = opendir(dirs[i]);
        struct dirent *de;

        while (d && (de = readdir(d))) {
            char path[2 * PATH_MAX];
            struct sbx__cgroup cg = {.n_dirs = 1, .dirs = {path}, .oom_fd = -1};

            if (strncmp(de->d_name, run_prefix, strlen(run_prefix)))
                continue;
            snprintf(path, sizeof(path), "%s/%s", dirs[i], de->d_name);
            fprintf(stderr, "sweep: removing %s left by a failed test\n", path);
            (void)sbx__cgroup_teardown(&cg, kill_listed, NULL);
        }
    }
}

/* ---- v1 ---- */

START_TEST(test_mode)
{
    struct statfs sfs;
    bool v2;

    ck_assert_int_eq(statfs("/sys/fs/cgroup", &sfs), 0);
    v2 = sfs.f_type == CGROUP2_SUPER_MAGIC;
    ck_assert_str_eq(sbx_cgroup_mode(), v2 ? "v2" : "v1");
    ck_assert_ptr_eq(sbx__cgroup_ops(), v2 ? &sbx__cgroup_v2_ops : &sbx__cgroup_v1_ops);
}
END_TEST

START_TEST(test_v1_create_limits)
{
    struct sbx_limits lim = {.memory_bytes = 64 << 20,
                             .pids_max = 16,
                             .cpu_weight = 100,
                             .cpu_quota_us = 50000,
                             .cpu_period_us = 200000};
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v1_ops, "limits", &lim);
    _cleanup_free_ char *mem = NULL, *pids = NULL, *cpu = NULL, *cpuset = NULL;
    _cleanup_free_ char *freezer = NULL, *cpuacct = NULL;
    char path[PATH_MAX];

    ck_assert_int_eq(sbx__cgroup_v1_own_dir("memory", &mem, NULL), 0);
    ck_assert_int_eq(sbx__cgroup_v1_own_dir("pids", &pids, NULL), 0);
    ck_assert_int_eq(sbx__cgroup_v1_own_dir("cpu", &cpu, NULL), 0);
    ck_assert_int_eq(sbx__cgroup_v1_own_dir("cpuacct", &cpuacct, NULL), 0);
    ck_assert_int_eq(sbx__cgroup_v1_own_dir("freezer", &freezer, NULL), 0);

    snprintf(path, sizeof(path), "%s/%s/limits", mem, parent);
    read_eq(path, "memory.limit_in_bytes", "67108864");
    if (sbx__cgroup_file_exists(path, "memory.memsw.limit_in_bytes"))
        read_eq(path, "memory.memsw.limit_in_bytes", "67108864");
    snprintf(path, sizeof(path), "%s/%s/limits", pids, parent);
    read_eq(path, "pids.max", "16");
    snprintf(path, sizeof(path), "%s/%s/limits", cpu, parent);
    read_eq(path, "cpu.shares", "2597"); /* 2 + (99 * 262142) / 9999 */
    read_eq(path, "cpu.cfs_period_us", "200000");
    read_eq(path, "cpu.cfs_quota_us", "50000");
    snprintf(path, sizeof(path), "%s/%s/limits", cpuacct, parent);
    ck_assert(exists(path));
    snprintf(path, sizeof(path), "%s/%s/limits", freezer, parent);
    ck_assert(exists(path));
    /* cpuset is left alone: a new cpuset cgroup would refuse tasks. */
    if (sbx__cgroup_v1_own_dir("cpuset", &cpuset, NULL) == 0) {
        snprintf(path, sizeof(path), "%s/%s/limits", cpuset, parent);
        ck_assert(!exists(path));
    }
    ck_assert_int_ge(cg->ops->oom_fd(cg), 0);
    destroy_ok(cg);

    /* The weight scale's ends. */
    lim = (struct sbx_limits){.cpu_weight = 1};
    cg = create_ok(&sbx__cgroup_v1_ops, "w1", &lim);
    snprintf(path, sizeof(path), "%s/%s/w1", cpu, parent);
    read_eq(path, "cpu.shares", "2");
    ck_assert_int_eq(cg->ops->oom_fd(cg), -1);
    destroy_ok(cg);
    lim = (struct sbx_limits){.cpu_weight = 10000};
    cg = create_ok(&sbx__cgroup_v1_ops, "w10000", &lim);
    snprintf(path, sizeof(path), "%s/%s/w10000", cpu, parent);
    read_eq(path, "cpu.shares", "262144");
    destroy_ok(cg);
}
END_TEST

START_TEST(test_v1_bad_names)
{
    static const char *const bad_ids[] = {
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "a b",
        "0123456789012345678901234567890123456789012345678901234567890123456789"};
    static const char *const bad_parents[] = {"", "/abs", "..", "a/../b", "a//b", "a/", "x y"};
    struct sbx__cgroup *cg = NULL;
    sbx_error err = {0};

    for (size_t i = 0; i < SBX_ARRAY_SIZE(bad_ids); i++)
        ck_assert_int_eq(sbx__cgroup_v1_ops.create(parent, bad_ids[i], NULL, &cg, &err), -EINVAL);
    for (size_t i = 0; i < SBX_ARRAY_SIZE(bad_parents); i++)
        ck_assert_int_eq(sbx__cgroup_v1_ops.create(bad_parents[i], "x", NULL, &cg, &err), -EINVAL);
    ck_assert_int_eq(sbx__cgroup_v1_ops.remove(parent, "../x", &err), -EINVAL);
    ck_assert_ptr_null(cg);

    /* A second sandbox of the same id is refused, and the first survives. */
    cg = create_ok(&sbx__cgroup_v1_ops, "dup", NULL);
    {
        struct sbx__cgroup *cg2 = NULL;
        ck_assert_int_eq(sbx__cgroup_v1_ops.create(parent, "dup", NULL, &cg2, &err), -EEXIST);
        ck_assert_ptr_null(cg2);
    }
    ck_assert(exists(cg->dirs[0]));
    destroy_ok(cg);
}
END_TEST

START_TEST(test_v1_attach)
{
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v1_ops, "attach", NULL);
    struct child c = spawn(do_pause, NULL);

    attach_ok(cg, c.pid);
    for (size_t i = 0; i < cg->n_dirs; i++)
        ck_assert_msg(procs_has(cg->dirs[i], c.pid), "%d not in %s", (int)c.pid, cg->dirs[i]);
    ck_assert_int_eq(cg->ops->oom_fd(cg), -1);
    release(&c);
    destroy_ok(cg);
    assert_killed(c.pid);
}
END_TEST

static void do_allocate(void *arg)
{
    size_t len = (size_t)(uintptr_t)arg;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (m == MAP_FAILED)
        _exit(101);
    for (size_t i = 0; i < len; i += 4096)
        m[i] = 1;
    _exit(0); /* survived: the limit did not hold */
}

/* The hierarchies found once (sbx_prepare() in a zygote) serve its forks
 * while they stay in its cgroup; a fork moved elsewhere finds its own. */
START_TEST(test_v1_own_dir_in_forks)
{
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v1_ops, "ownfork", NULL);
    char *mem = NULL;
    int sv[2];
    pid_t pid;

    ck_assert_int_eq(sbx__cgroup_v1_own_dir("memory", &mem, NULL), 0);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char *a = NULL, *b = NULL, go;
        /* As the parent's; then, moved into cg, its forks find that one. */
        if (sbx__cgroup_v1_own_dir("memory", &a, NULL) < 0 || strcmp(a, mem)) {
            fprintf(stderr, "fork: %s, parent: %s\n", a ? a : "(none)", mem);
            _exit(1);
        }
        if (write(sv[1], "1", 1) != 1 || read(sv[1], &go, 1) != 1)
            _exit(2);
        /* A fork of it, now in another cgroup than the cached entry's. */
        pid_t g = fork();
        if (g == 0) {
            if (sbx__cgroup_v1_own_dir("memory", &b, NULL) < 0)
                _exit(3);
            for (size_t i = 0; i < cg->n_dirs; i++)
                if (!strcmp(cg->dirs[i], b))
                    _exit(0);
            _exit(4);
        }
        int st = -1;
        if (g < 0 || waitpid(g, &st, 0) != g)
            _exit(5);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 6);
    }
    {
        char one;
        ck_assert_int_eq(read(sv[0], &one, 1), 1);
    }
    attach_ok(cg, pid);
    ck_assert_int_eq(write(sv[0], "g", 1), 1);
    ck_assert_int_eq(wait_child(pid, 5000), 0);
    /* The parent's own entry is still its own. */
    {
        char *again = NULL;
        ck_assert_int_eq(sbx__cgroup_v1_own_dir("memory", &again, NULL), 0);
        ck_assert_str_eq(again, mem);
        free(again);
    }
    free(mem);
    close(sv[0]);
    close(sv[1]);
    destroy_ok(cg);
}
END_TEST

START_TEST(test_v1_oom)
{
    struct sbx_limits lim = {.memory_bytes = 32 << 20};
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v1_ops, "oom", &lim);
    int fd = cg->ops->oom_fd(cg);
    struct child c = spawn(do_allocate, (void *)(uintptr_t)(256 << 20));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    uint64_t events = 0;
    struct sbx_stats s;

    ck_assert_int_ge(fd, 0);
    attach_ok(cg, c.pid);
    release(&c);
    assert_killed(c.pid);
    ck_assert_int_eq(poll(&pfd, 1, 5000), 1);
    ck_assert(pfd.revents & POLLIN);
    ck_assert_int_eq(read(fd, &events, sizeof(events)), (ssize_t)sizeof(events));
    ck_assert_uint_ge(events, 1);
    s = stats_ok(cg);
    ck_assert_uint_ge(s.oom_kills, 1);
    ck_assert_uint_le(s.memory_peak, 32 << 20);
    destroy_ok(cg);
}
END_TEST

struct fork_result {
    int forked;
    int error;
};

static int result_fd = -1;

static void do_fork_until_refused(void *arg)
{
    struct fork_result res = {0, 0};

    (void)arg;
    for (int i = 0; i < 32; i++) {
        pid_t p = fork();

        if (p == 0)
            do_pause(NULL);
        if (p < 0) {
            res.error = errno;
            break;
        }
        res.forked++;
    }
    if (write(result_fd, &res, sizeof(res)) != (ssize_t)sizeof(res))
        _exit(102);
    do_pause(NULL);
}

START_TEST(test_v1_pids)
{
    struct sbx_limits lim = {.pids_max = 8};
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v1_ops, "pids", &lim);
    struct fork_result res;
    struct child c;
    int p[2];

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    result_fd = p[1];
    c = spawn(do_fork_until_refused, NULL);
    close(p[1]);
    attach_ok(cg, c.pid);
    release(&c);
    ck_assert_int_eq(read(p[0], &res, sizeof(res)), (ssize_t)sizeof(res));
    close(p[0]);
    /* The child itself is the first of the 8 tasks: 7 forks succeed, the
     * next is refused. */
    ck_assert_int_eq(res.forked, 7);
    ck_assert_int_eq(res.error, EAGAIN);
    ck_assert_uint_eq(stats_ok(cg).pids_current, 8);
    destroy_ok(cg);
    assert_killed(c.pid);
}
END_TEST

/* CPU time over wall time of a busy child, measured through the cgroup. */
static double busy_share(struct sbx__cgroup *cg, double seconds)
{
    struct sbx_stats a, b;
    double t0, t1;

    sleep_ms(100);
    a = stats_ok(cg);
    t0 = now_s();
    sleep_ms((long)(seconds * 1000));
    b = stats_ok(cg);
    t1 = now_s();
    return (double)(b.cpu_usage_ns - a.cpu_usage_ns) / 1e9 / (t1 - t0);
}

START_TEST(test_v1_cpu_quota)
{
    struct sbx_limits lim = {.cpu_quota_us = 20000, .cpu_period_us = 100000};
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v1_ops, "quota", &lim);
    struct child c = spawn(do_spin, NULL);
    double share;

    attach_ok(cg, c.pid);
    release(&c);
    share = busy_share(cg, 1.0);
    /* 20% allowed; well under 40% shows the cap holds, above 3% that the
     * child really ran. */
    ck_assert_msg(share < 0.40 && share > 0.03, "busy child used %.1f%% of a CPU", share * 100);
    destroy_ok(cg);
    assert_killed(c.pid);
}
END_TEST

START_TEST(test_v1_stats)
{
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v1_ops, "stats", NULL);
    struct child c = spawn(do_touch_and_spin, (void *)(uintptr_t)(16 << 20));
    struct sbx_stats s;

    attach_ok(cg, c.pid);
    release(&c);
    sleep_ms(300);
    s = stats_ok(cg);
    ck_assert_uint_gt(s.cpu_usage_ns, 0);
    ck_assert_uint_ge(s.memory_current, 8 << 20);
    ck_assert_uint_ge(s.memory_peak, s.memory_current);
    ck_assert_uint_eq(s.pids_current, 1);
    ck_assert_uint_eq(s.oom_kills, 0);
    destroy_ok(cg);
    assert_killed(c.pid);
}
END_TEST

/* A child with a tree beneath it, one of which forks without pause, to race
 * the kill. */
static void do_fork_forever(void *arg)
{
    (void)arg;
    for (;;) {
        pid_t p = fork();

        if (p == 0)
            _exit(0);
        if (p > 0)
            waitpid(p, NULL, 0);
    }
}

static void do_tree(void *arg)
{
    (void)arg;
    for (int i = 0; i < 3; i++) {
        if (fork() == 0) {
            for (int j = 0; j < 2; j++) {
                if (fork() == 0)
                    do_pause(NULL);
            }
            do_pause(NULL);
        }
    }
    if (fork() == 0)
        do_fork_forever(NULL);
    do_pause(NULL);
}

static void kill_tree(const struct sbx__cgroup_ops *ops)
{
    struct sbx__cgroup *cg = create_ok(ops, "kill", NULL);
    struct child c = spawn(do_tree, NULL);
    double deadline;
    sbx_error err = {0};
    int r;

    attach_ok(cg, c.pid);
    release(&c);
    /* child + 3 + 6 + the forker (and now and then its child) */
    deadline = now_s() + 5;
    while (count_procs(cg->dirs[0]) < 11) {
        ck_assert_msg(now_s() < deadline, "tree did not start: %d", count_procs(cg->dirs[0]));
        sleep_ms(5);
    }
    r = cg->ops->kill(cg, &err);
    ck_assert_msg(r == 0, "kill: %d %s", r, err.message);
    assert_killed(c.pid);
    deadline = now_s() + 5;
    for (size_t i = 0; i < cg->n_dirs; i++) {
        while (count_procs(cg->dirs[i]) != 0) {
            ck_assert_msg(now_s() < deadline, "%s: %d left", cg->dirs[i], count_procs(cg->dirs[i]));
            sleep_ms(5);
        }
    }
    /* Every descendant is gone: nothing is left to reap. */
    ck_assert_int_eq(reap_all(5000), 0);
    /* kill is idempotent on an empty cgroup. */
    ck_assert_int_eq(cg->ops->kill(cg, &err), 0);
    destroy_ok(cg);
}

START_TEST(test_v1_kill)
{
    kill_tree(&sbx__cgroup_v1_ops);
}
END_TEST

START_TEST(test_v1_destroy)
{
    struct sbx_limits lim = {.memory_bytes = 64 << 20, .pids_max = 32, .cpu_weight = 50};
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v1_ops, "destroy", &lim);
    char dirs[SBX__CGROUP_MAX_DIRS][PATH_MAX];
    size_t n = cg->n_dirs;
    struct child c = spawn(do_pause, NULL);

    ck_assert_uint_ge(n, 5); /* memory pids cpu cpuacct freezer, unless co-mounted */
    for (size_t i = 0; i < n; i++)
        snprintf(dirs[i], PATH_MAX, "%s", cg->dirs[i]);
    attach_ok(cg, c.pid);
    release(&c);
    destroy_ok(cg);
    assert_killed(c.pid);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(!exists(dirs[i]), "%s left behind", dirs[i]);
    /* The parent stays: other sandboxes may be using it. */
    for (size_t i = 0; i < n; i++) {
        char *slash = strrchr(dirs[i], '/');
        *slash = '\0';
        ck_assert_int_eq(count_subdirs(dirs[i]), 0);
    }
}
END_TEST

/* A daemon that creates a sandbox's cgroup, puts a process in it and dies
 * without cleaning up: the handle is lost with it. */
static void lost_handle(const struct sbx__cgroup_ops *ops, const struct sbx_limits *lim,
                        pid_t *ret_sleeper)
{
    int p[2];
    pid_t daemon;
    int st;

    ck_assert_int_eq(pipe2(p, O_CLOEXEC), 0);
    daemon = fork();
    ck_assert_int_ge(daemon, 0);
    if (daemon == 0) {
        struct sbx__cgroup *cg = NULL;
        pid_t sleeper;

        close(p[0]);
        if (ops->create(parent, "lost", lim, &cg, NULL) < 0)
            _exit(1);
        sleeper = fork();
        if (sleeper == 0)
            do_pause(NULL);
        if (sleeper < 0 || ops->attach(cg, sleeper, NULL) < 0)
            _exit(2);
        if (write(p[1], &sleeper, sizeof(sleeper)) != (ssize_t)sizeof(sleeper))
            _exit(3);
        _exit(0);
    }
    close(p[1]);
    st = wait_child(daemon, 5000);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "daemon: status 0x%x", st);
    ck_assert_int_eq(read(p[0], ret_sleeper, sizeof(*ret_sleeper)), (ssize_t)sizeof(*ret_sleeper));
    close(p[0]);
}

static void remove_lost(const struct sbx__cgroup_ops *ops, const struct sbx_limits *lim,
                        size_t want_dirs)
{
    char dirs[SBX__CGROUP_MAX_DIRS + 1][PATH_MAX];
    size_t n = hierarchy_dirs("lost", dirs, SBX_ARRAY_SIZE(dirs)), found = 0;
    sbx_error err = {0};
    pid_t sleeper;
    int r;

    lost_handle(ops, lim, &sleeper);
    for (size_t i = 0; i < n; i++) {
        if (exists(dirs[i])) {
            found++;
            ck_assert_msg(procs_has(dirs[i], sleeper), "%d not in %s", (int)sleeper, dirs[i]);
        }
    }
    ck_assert_uint_eq(found, want_dirs);
    r = ops->remove(parent, "lost", &err);
    ck_assert_msg(r == 0, "remove: %d %s", r, err.message);
    assert_killed(sleeper);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(!exists(dirs[i]), "%s left behind", dirs[i]);
    /* Nothing left to remove is fine. */
    ck_assert_int_eq(ops->remove(parent, "lost", &err), 0);
    ck_assert_int_eq(ops->remove("sandboxd-cgtest-never-made", "lost", &err), 0);
}

START_TEST(test_v1_remove)
{
    struct sbx_limits lim = {.memory_bytes = 64 << 20, .pids_max = 32};
    _cleanup_free_ char *own = NULL;
    size_t n = 0;

    /* As many directories as distinct hierarchies among the five. */
    {
        char *seen[SBX_ARRAY_SIZE(v1_controllers)];
        for (size_t i = 0; i < SBX_ARRAY_SIZE(v1_controllers); i++) {
            char *d = NULL;
            bool dup = false;
            if (sbx__cgroup_v1_own_dir(v1_controllers[i], &d, NULL) < 0)
                continue;
            for (size_t j = 0; j < n; j++)
                dup = dup || !strcmp(seen[j], d);
            if (dup)
                free(d);
            else
                seen[n++] = d;
        }
        for (size_t j = 0; j < n; j++)
            free(seen[j]);
    }
    remove_lost(&sbx__cgroup_v1_ops, &lim, n);
}
END_TEST

START_TEST(test_v1_cycles)
{
    struct sbx_limits lim = {
        .memory_bytes = 64 << 20, .pids_max = 64, .cpu_weight = 200, .cpu_quota_us = 50000};
    char dirs[SBX__CGROUP_MAX_DIRS + 1][PATH_MAX];
    size_t n = hierarchy_dirs(NULL, dirs, SBX_ARRAY_SIZE(dirs));
    int fds = open_fds();

    for (int i = 0; i < 100; i++) {
        char id[32];

        snprintf(id, sizeof(id), "cycle-%d", i);
        destroy_ok(create_ok(&sbx__cgroup_v1_ops, id, &lim));
    }
    ck_assert_int_eq(open_fds(), fds);
    for (size_t i = 0; i < n; i++)
        ck_assert_int_le(count_subdirs(dirs[i]), 0);
}
END_TEST

/* ---- v2 on a controller-less cgroup2 mount ---- */

START_TEST(test_v2_lifecycle)
{
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v2_ops, "life", NULL);
    struct child c = spawn(do_pause, NULL);
    _cleanup_free_ char *dir = strdup(cg->dirs[0]);
    sbx_error err = {0};

    ck_assert_uint_eq(cg->n_dirs, 1);
    ck_assert_ptr_eq(strstr(cg->dirs[0], v2_root), cg->dirs[0]);
    ck_assert(exists(dir));
    ck_assert_int_eq(cg->ops->oom_fd(cg), -1);
    attach_ok(cg, c.pid);
    ck_assert(procs_has(dir, c.pid));
    release(&c);
    ck_assert_int_eq(cg->ops->kill(cg, &err), 0);
    assert_killed(c.pid);
    destroy_ok(cg);
    ck_assert(!exists(dir));
}
END_TEST

START_TEST(test_v2_kill)
{
    kill_tree(&sbx__cgroup_v2_ops);
}
END_TEST

START_TEST(test_v2_destroy_running)
{
    struct sbx__cgroup *cg = create_ok(&sbx__cgroup_v2_ops, "running", NULL);
    struct child c = spawn(do_spin, NULL);
    _cleanup_free_ char *dir = strdup(cg->dirs[0]);
    struct sbx_stats s;

    attach_ok(cg, c.pid);
    release(&c);
    sleep_ms(200);
    s = stats_ok(cg);
    ck_assert_uint_gt(s.cpu_usage_ns, 0); /* cpu.stat needs no controller */
    destroy_ok(cg);
    assert_killed(c.pid);
    ck_assert(!exists(dir));
}
END_TEST

START_TEST(test_v2_remove)
{
    remove_lost(&sbx__cgroup_v2_ops, NULL, 1);
}
END_TEST

START_TEST(test_v2_limit_unsupported)
{
    static const struct {
        struct sbx_limits lim;
        const char *controller;
    } cases[] = {
        {{.memory_bytes = 32 << 20}, "memory"},
        {{.pids_max = 8}, "pids"},
        {{.cpu_quota_us = 20000}, "cpu"},
    };
    char dirs[SBX__CGROUP_MAX_DIRS + 1][PATH_MAX];
    size_t n = hierarchy_dirs("refused", dirs, SBX_ARRAY_SIZE(dirs));

    for (size_t i = 0; i < SBX_ARRAY_SIZE(cases); i++) {
        struct sbx__cgroup *cg = NULL;
        sbx_error err = {0};
        char want[64];

        ck_assert_int_eq(sbx__cgroup_v2_ops.create(parent, "refused", &cases[i].lim, &cg, &err),
                         -EOPNOTSUPP);
        ck_assert_ptr_null(cg);
        snprintf(want, sizeof(want), "`%s`", cases[i].controller);
        ck_assert_msg(strstr(err.message, want), "message `%s` names no %s", err.message,
                      cases[i].controller);
    }
    ck_assert(!exists(dirs[n - 1]));
}
END_TEST

START_TEST(test_v2_limits)
{
    /* Enforcing limits needs memory, pids and cpu delegated to our cgroup in
     * a cgroup2 hierarchy; v2_root is only chosen where there are none. */
    printf("skip: v2 limits: no cgroup2 controllers available to us at %s "
           "(on a v2 host this would enable them in our own cgroup)\n",
           v2_root);
}
END_TEST

static Suite *cgroup_suite(void)
{
    Suite *s = suite_create("cgroup");
    TCase *tc = tcase_create("v1");
    TCase *tc2 = tcase_create("v2");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_unchecked_fixture(tc, NULL, sweep);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_mode);
    if (v1_skip) {
        printf("skip: v1 tests: %s\n", v1_skip);
    } else {
        tcase_add_test(tc, test_v1_create_limits);
        tcase_add_test(tc, test_v1_bad_names);
        tcase_add_test(tc, test_v1_attach);
        tcase_add_test(tc, test_v1_own_dir_in_forks);
        tcase_add_test(tc, test_v1_oom);
        tcase_add_test(tc, test_v1_pids);
        tcase_add_test(tc, test_v1_cpu_quota);
        tcase_add_test(tc, test_v1_stats);
        tcase_add_test(tc, test_v1_kill);
        tcase_add_test(tc, test_v1_destroy);
        tcase_add_test(tc, test_v1_remove);
        tcase_add_test(tc, test_v1_cycles);
    }
    suite_add_tcase(s, tc);

    tcase_add_checked_fixture(tc2, setup, teardown);
    tcase_add_unchecked_fixture(tc2, NULL, sweep);
    tcase_set_timeout(tc2, 120);
    if (v2_skip) {
        printf("skip: v2 tests: %s\n", v2_skip);
    } else {
        tcase_add_test(tc2, test_v2_lifecycle);
        tcase_add_test(tc2, test_v2_kill);
        tcase_add_test(tc2, test_v2_destroy_running);
        tcase_add_test(tc2, test_v2_remove);
        tcase_add_test(tc2, test_v2_limit_unsupported);
        tcase_add_test(tc2, test_v2_limits);
    }
    suite_add_tcase(s, tc2);
    return s;
}

/* Picks a cgroup2 mount where the v2 backend has no controller to enable,
 * so testing it cannot rearrange the processes of our own cgroup. */
static void find_v2_root(void)
{
    static const char *const candidates[] = {"/sys/fs/cgroup/unified", "/sys/fs/cgroup"};

    v2_skip = "no cgroup2 mount at /sys/fs/cgroup or /sys/fs/cgroup/unified";
    for (size_t i = 0; i < SBX_ARRAY_SIZE(candidates); i++) {
        _cleanup_free_ char *own = NULL;
        _cleanup_free_ char *dir = NULL;
        struct statfs sfs;
        char ctrls[1024];

        if (statfs(candidates[i], &sfs) < 0 || sfs.f_type != CGROUP2_SUPER_MAGIC)
            continue;
        if (sbx__cgroup_own_path(NULL, &own, NULL) < 0 ||
            sbx__cgroup_join(candidates[i], own, NULL, &dir, NULL) < 0 ||
            sbx__cgroup_read(dir, "cgroup.controllers", ctrls, sizeof(ctrls), NULL) < 0) {
            v2_skip = "cannot read our own cgroup2 cgroup.controllers";
            continue;
        }
        if (strstr(ctrls, "memory") || strstr(ctrls, "pids") || strstr(ctrls, "cpu")) {
            v2_skip = "the cgroup2 mount has controllers: testing would enable them in our "
                      "own cgroup and move its processes";
            continue;
        }
        v2_root = candidates[i];
        v2_skip = NULL;
        return;
    }
}

int main(void)
{
    _cleanup_free_ char *mem = NULL;
    SRunner *sr;
    int failed;

    if (geteuid() != 0) {
        printf("skip: test-cgroup needs root to create cgroups\n");
        return 77;
    }
    if (sbx__cgroup_v1_own_dir("memory", &mem, NULL) < 0)
        v1_skip = "no cgroup v1 memory hierarchy mounted";
    find_v2_root();
    if (v1_skip && v2_skip) {
        printf("skip: %s; %s\n", v1_skip, v2_skip);
        return 77;
    }
    snprintf(run_prefix, sizeof(run_prefix), "sandboxd-cgtest-%d-", (int)getpid());
    setvbuf(stdout, NULL, _IOLBF, 0);
    sr = srunner_create(cgroup_suite());
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
